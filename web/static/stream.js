// Follows one assistant message's events (DESIGN section 6) through EventSource.
//
// EventSource cannot send headers, so each connection takes a fresh events token. After a drop
// it reconnects itself with `lastEventId`, the id of the last event it got, and so continues
// exactly where it stopped; the stream closes after `done`.

const TYPES = ["status", "delta", "tool_call", "tool_result", "fragment", "error", "done"];

export function follow(call, messageId, on) {
  let source = null;
  let lastId = "";
  let closed = false;
  let failures = 0;
  let timer = null;
  const path = `/api/messages/${encodeURIComponent(messageId)}`;

  async function open() {
    if (closed) return;
    let token;
    try {
      token = (await call("POST", `${path}/events/token`)).token;
    } catch (error) {
      if (error.status === 401 || error.status === 404) return stop(error);
      return later();
    }
    if (closed) return;
    const params = new URLSearchParams({ token });
    if (lastId) params.set("lastEventId", lastId);
    else on.reset?.(); // from the first event: the whole message comes again
    const openedAt = lastId;
    source = new EventSource(`${path}/events?${params}`);
    for (const type of TYPES) {
      source.addEventListener(type, (event) => {
        // The API's `error` event shares its name with the connection's own error, which
        // carries no data and is handled by onerror below.
        if (!(event instanceof MessageEvent)) return;
        failures = 0;
        // An event built from the database has no id of its own; its `status` starts a
        // snapshot of the whole message, so what was shown before is replaced, not added to.
        const ownId = event.lastEventId && event.lastEventId !== openedAt;
        if (type === "status" && !ownId) on.reset?.();
        if (event.lastEventId) lastId = event.lastEventId;
        on.event(type, JSON.parse(event.data));
        if (type === "done") stop();
      });
    }
    source.onerror = () => {
      source.close();
      source = null;
      later();
    };
  }

  function later() {
    if (closed) return;
    on.reconnecting?.();
    const wait = Math.min(5000, 200 * 2 ** failures++);
    timer = setTimeout(open, wait);
  }

  function stop(error) {
    closed = true;
    clearTimeout(timer);
    if (source) source.close();
    if (error) on.failed?.(error);
  }

  open();
  return { close: () => stop(), get lastEventId() { return lastId; } };
}
