"""Framework templates for the local sandbox: the pinned starters, and where they are prepared.

The repository carries one starter per framework under `sandbox-templates/<framework>/app/`
(sources, `package.json` with exact versions, `package-lock.json`). `orchestrator sandbox
prepare` copies a starter into the data folder and installs its dependencies there once per
machine (`prepare.py`); a workspace then starts with the starter's source files, and its
commands see the prepared `node_modules` read-only.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from models import Framework
from orchestrator.errors import SandboxError

# Where the starters live in a checkout: beside the `orchestrator` package.
STARTERS = Path(__file__).resolve().parents[2] / "sandbox-templates"
STAMP = ".prepared"  # in a prepared template: the hash of the lock file it was installed from
NODE_MODULES = "node_modules"
# What prepare copies besides the sources, and what a workspace never gets from the template.
_NOT_SOURCES = frozenset({NODE_MODULES, STAMP, "package-lock.json"})


@dataclass(frozen=True)
class TemplateSpec:
    """How one framework's starter builds: the command, and where its output lands."""

    framework: str
    build_command: str
    # The build output served as the preview, relative to the workspace.
    output_dir: str
    # What the model is told about the project (prompting.py adds how to build it).
    guide: str
    # Extra words that name the build when the model runs it another way.
    build_words: tuple[str, ...] = ()

    @property
    def folder(self) -> str:
        return self.framework.lower()


_VITE = ("vite build",)
SPECS: dict[str, TemplateSpec] = {
    spec.framework: spec
    for spec in (
        TemplateSpec(
            Framework.REACT,
            "npm run build",
            "dist",
            "The project is a React 18 + Vite app (JavaScript with JSX; .tsx also builds). The "
            "entry is src/main.jsx and the root component src/App.jsx; styles in src/index.css; "
            "keep index.html at the root.",
            _VITE,
        ),
        TemplateSpec(
            Framework.VUE,
            "npm run build",
            "dist",
            "The project is a Vue 3 + Vite app using single-file components. The entry is "
            "src/main.js and the root component src/App.vue; keep index.html at the root.",
            _VITE,
        ),
        TemplateSpec(
            Framework.SVELTE,
            "npm run build",
            "dist",
            "The project is a Svelte 4 + Vite app. The entry is src/main.js and the root "
            "component src/App.svelte; keep index.html at the root.",
            _VITE,
        ),
        TemplateSpec(
            Framework.NEXTJS,
            "npm run build",
            "out",
            "The project is a Next.js 14 app (App Router, JavaScript with JSX) built as a static "
            "export: pages in app/ (app/page.jsx, app/layout.jsx), components in components/. "
            "There is no server at run time: no API routes, server actions or dynamic routes "
            "without generateStaticParams; interactive components start with 'use client'.",
            ("next build",),
        ),
        TemplateSpec(
            Framework.ANGULAR,
            "npm run build",
            "dist/app/browser",
            "The project is an Angular 18 app with standalone components. The root component is "
            "src/app/app.component.ts with app.component.html and app.component.css beside it; "
            "the entry is src/main.ts.",
            ("ng build",),
        ),
    )
}


class TemplateNotPrepared(SandboxError):
    """A run's framework has no prepared template on this worker."""


def lock_hash(app: Path) -> str:
    """What a prepared template was installed from: its package.json and lock file."""
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update(name.encode() + b"\0" + (app / name).read_bytes() + b"\0")
    return digest.hexdigest()


def spec_for(framework: str) -> TemplateSpec:
    spec = SPECS.get(framework.upper())
    if spec is None:
        raise SandboxError(f"no template for framework {framework!r}")
    return spec


_TITLES = {"NEXTJS": "Next.js", "REACT": "React", "VUE": "Vue", "SVELTE": "Svelte"}


def not_prepared_message(framework: str) -> str:
    spec = spec_for(framework)
    title = _TITLES.get(spec.framework, spec.framework.title())
    return (
        f"The {title} template is not prepared on this worker, so its app cannot be "
        f"built: run `orchestrator sandbox prepare {spec.folder}` on the worker's machine "
        "(it installs the template's dependencies once), then send the prompt again."
    )


@dataclass(frozen=True)
class PreparedTemplate:
    spec: TemplateSpec
    path: Path

    @property
    def node_modules(self) -> Path:
        return self.path / NODE_MODULES

    def source_files(self) -> dict[str, str]:
        """The starter's source files (what a new project starts with), by relative path."""
        files: dict[str, str] = {}
        for file in sorted(self.path.rglob("*")):
            relative = file.relative_to(self.path)
            if relative.parts[0] in _NOT_SOURCES or not file.is_file() or file.is_symlink():
                continue
            files[relative.as_posix()] = file.read_text(encoding="utf-8")
        return files


@dataclass(frozen=True)
class TemplateStore:
    """The prepared templates under `root` (the data folder's `templates/`)."""

    root: Path
    starters: Path = STARTERS

    def prepared(self, framework: str) -> PreparedTemplate | None:
        """The framework's template when it is installed from the starter's current lock."""
        spec = spec_for(framework)
        path = self.root / spec.folder
        try:
            stamp = (path / STAMP).read_text().strip()
            current = lock_hash(self.starters / spec.folder / "app")
        except OSError:
            return None
        if stamp != current or not (path / NODE_MODULES).is_dir():
            return None
        # Absolute: bubblewrap binds it from another working directory.
        return PreparedTemplate(spec, path.resolve())

    def require(self, framework: str) -> PreparedTemplate:
        found = self.prepared(framework)
        if found is None:
            raise TemplateNotPrepared(not_prepared_message(framework))
        return found

    def ready(self) -> list[str]:
        """The frameworks whose templates are prepared, in the order of SPECS."""
        return [name for name in SPECS if self.prepared(name) is not None]
