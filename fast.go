package yolk

// FastLookup returns a worker's prepared answer to GET path, for its fast
// path (see [Worker.HandleFast]): the response's header lines ("Name:
// value\r\n" each, as http.Header.Write renders them, without Date,
// Content-Length and Connection, which the event loop adds) and its body,
// with status 200; ok false leaves the request to the handler. It runs on the event loop's thread for every
// fast request: it must not block, and must be safe for concurrent use with
// whatever changes the data it reads. Nobody modifies the slices it returns.
type FastLookup func(path []byte) (header, body []byte, ok bool)

// HandleFast gives the worker a fast path beside its handler (see
// [Worker.Handle]): an event loop owns the worker's connections, answers
// itself every plain request it fully understands ("GET <path> HTTP/1.1",
// a clean path of unreserved characters, no query, no body, no
// Connection or Upgrade header) for which lookup has an answer, and hands
// every other connection over, for good, with the bytes already read, to the
// handler's http.Server. lookup's answers must be exactly what the handler
// would send for the same request: which of the two answers is not the
// client's to know. Fast answers count in
// yolk_http_request_duration_seconds{class="2xx"}; the stall watch
// (YOLK_HANG_TIMEOUT) watches the handler only. Stop and reload drain both.
func (w *Worker) HandleFast(lookup FastLookup) {
	w.register("HandleFast", func() { w.fast = lookup })
}
