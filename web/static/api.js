// The HTTP API (DESIGN section 4) as the page uses it, and its errors in words.

export class ApiError extends Error {
  constructor(status, body, retryAfter) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
    this.retryAfter = retryAfter;
  }
}

// `token()` gives the current JWT; it goes in a header, never in a URL.
export function client(token) {
  return async function call(method, path, body, headers = {}) {
    const init = { method, headers: { Authorization: `Bearer ${token()}`, ...headers } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    const response = await fetch(path, init);
    const text = await response.text();
    let parsed = null;
    try {
      parsed = text ? JSON.parse(text) : null;
    } catch {
      parsed = { error: text.slice(0, 200) };
    }
    if (!response.ok) {
      throw new ApiError(response.status, parsed, response.headers.get("Retry-After"));
    }
    if (parsed && typeof parsed === "object") {
      // A page of messages names the one before it in X-Prev-Cursor (README, API notes).
      Object.defineProperty(parsed, "prevCursor", { value: response.headers.get("X-Prev-Cursor") });
    }
    return parsed;
  };
}

function seconds(retryAfter) {
  const n = Number(retryAfter);
  if (Number.isFinite(n)) return Math.max(1, Math.ceil(n));
  const at = Date.parse(retryAfter || "");
  return Number.isFinite(at) ? Math.max(1, Math.ceil((at - Date.now()) / 1000)) : null;
}

// What to tell a person, for an error the API answered (or a network failure).
export function words(error) {
  if (!(error instanceof ApiError)) {
    return "Could not reach the server: check that it is running and your connection, then try again.";
  }
  const said = error.body.error ? String(error.body.error).replace(/\.?$/, ".") : "";
  switch (error.status) {
    case 400:
      return said || "The server did not accept that request.";
    case 401:
      return "Your sign-in has expired or the token is not valid: paste a new token.";
    case 402:
      return "You have run out of credits: nothing was sent and nothing was charged. " +
        "An operator can grant more (orchestrator credits grant USER N).";
    case 403:
      return `${said || "Your plan does not allow this."} Nothing was sent.`;
    case 404:
      return said || "Not found: it may be gone, or it is not yours.";
    case 409:
      return "A message is already being processed in this conversation: " +
        "wait for it to finish, or press Stop, then send again.";
    case 413:
      return "That is too large to send (the limit is 1 MiB).";
    case 429: {
      const wait = seconds(error.retryAfter);
      return wait
        ? `Too many requests: try again in ${wait} second${wait === 1 ? "" : "s"}.`
        : "Too many requests: wait a moment and try again.";
    }
    case 503:
      return `The service is unavailable right now${said ? ` (${said.replace(/\.$/, "")})` : ""}: ` +
        "nothing was sent and no credit was spent. Try again in a moment.";
    default:
      return `Something went wrong on the server (${error.status}${said ? `: ${said}` : ""}). Try again.`;
  }
}
