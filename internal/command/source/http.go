package source

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

const (
	maxValueSize = 1 << 20  // the largest body PUT /data/{key} accepts
	hugeSize     = 64 << 20 // the least a huge answer sends
)

// fault is how GET /data misbehaves, for tests of the consumers.
type fault int32

const (
	faultNone fault = iota
	faultError500
	faultHang
	faultBadJSON
	faultTruncated
	faultHuge
	faultWrongETag
)

var faultNames = [...]string{"none", "error500", "hang", "badjson", "truncated", "huge", "wrongetag"}

func (f fault) String() string { return faultNames[f] }

func parseFault(s string) (fault, bool) {
	for i, name := range faultNames {
		if s == name {
			return fault(i), true
		}
	}
	return 0, false
}

// api serves the source's HTTP endpoints. It is safe for concurrent use.
type api struct {
	store *store
	log   *slog.Logger

	fetches atomic.Int64 // GET /data answered in full (or misbehaving)
	checks  atomic.Int64 // GET /data answered 304
	fault   atomic.Int32 // a fault
}

func newAPI(st *store, log *slog.Logger) *api { return &api{store: st, log: log} }

// handler routes the endpoints.
func (a *api) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /data", a.getData)
	mux.HandleFunc("PUT /data/{key}", a.putKey)
	mux.HandleFunc("DELETE /data/{key}", a.deleteKey)
	mux.HandleFunc("GET /stats", a.stats)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /faults", a.getFault)
	mux.HandleFunc("POST /faults", a.setFault)
	return mux
}

func (a *api) getData(w http.ResponseWriter, r *http.Request) {
	snap := a.store.Snapshot()
	f := fault(a.fault.Load())
	if f == faultHang {
		a.log.Debug("GET /data hangs", "fault", f.String())
		<-r.Context().Done() // the client went away, or the server is stopping
		panic(http.ErrAbortHandler)
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", snap.etag)
	if f == faultNone && etagMatches(r.Header.Get("If-None-Match"), snap.etag) {
		a.checks.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	a.fetches.Add(1)
	switch f {
	case faultNone:
		h.Set("Content-Length", strconv.Itoa(len(snap.body)))
		w.Write(snap.body)
	case faultError500:
		h.Del("ETag")
		writeError(w, http.StatusInternalServerError, "injected fault: error500")
	case faultBadJSON:
		io.WriteString(w, "{not json")
	case faultTruncated:
		h.Set("Content-Length", strconv.Itoa(len(snap.body)+1))
		w.Write(snap.body[:len(snap.body)/2])
		http.NewResponseController(w).Flush()
		panic(http.ErrAbortHandler) // close the connection short of the promised length
	case faultHuge:
		writeHuge(r.Context(), w, hugeSize)
	case faultWrongETag:
		v, _ := strconv.ParseUint(snap.version, 10, 64)
		h.Set("ETag", `"`+strconv.FormatUint(v+1, 10)+`"`)
		h.Set("Content-Length", strconv.Itoa(len(snap.body)))
		w.Write(snap.body)
	}
}

// writeHuge streams a JSON object of at least size bytes, in entries of 1 MiB
// strings, without a Content-Length. It stops when the client goes away or the
// server stops; then the connection is closed rather than the body ended.
func writeHuge(ctx context.Context, w http.ResponseWriter, size int) {
	rc := http.NewResponseController(w)
	// A client that stops reading must not hold up a graceful stop.
	stop := context.AfterFunc(ctx, func() { rc.SetWriteDeadline(time.Now()) })
	defer stop()
	const entry = 1 << 20
	filler := strings.Repeat("x", entry)
	w.WriteHeader(http.StatusOK)
	sep := "{"
	for i := 0; i*entry < size; i++ {
		if ctx.Err() != nil {
			panic(http.ErrAbortHandler)
		}
		if _, err := fmt.Fprintf(w, "%s\"huge%d\":\"%s\"", sep, i, filler); err != nil {
			panic(http.ErrAbortHandler)
		}
		sep = ","
	}
	io.WriteString(w, "}")
}

// etagMatches reports whether an If-None-Match header names etag: "*", or a list
// of entity tags compared weakly (W/"1" matches "1").
func etagMatches(header, etag string) bool {
	for tag := range strings.SplitSeq(header, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "*" || strings.TrimPrefix(tag, "W/") == etag {
			return true
		}
	}
	return false
}

func (a *api) putKey(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !validKey(key) {
		writeError(w, http.StatusBadRequest, errBadKey.Error())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxValueSize))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			writeError(w, http.StatusRequestEntityTooLarge, "value is larger than 1 MiB")
			return
		}
		writeError(w, http.StatusBadRequest, "read body: "+err.Error())
		return
	}
	if !json.Valid(body) {
		writeError(w, http.StatusBadRequest, "body is not valid JSON: send the new value as a JSON document")
		return
	}
	v, err := a.store.Put(key, body, "http")
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, versionReply{v})
}

func (a *api) deleteKey(w http.ResponseWriter, r *http.Request) {
	key := r.PathValue("key")
	if !validKey(key) {
		writeError(w, http.StatusBadRequest, errBadKey.Error())
		return
	}
	v, ok, err := a.store.Delete(key, "http")
	switch {
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
	case !ok:
		writeError(w, http.StatusNotFound, fmt.Sprintf("no key %q", key))
	default:
		writeJSON(w, http.StatusOK, versionReply{v})
	}
}

type versionReply struct {
	Version string `json:"version"`
}

func (a *api) stats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, struct {
		Fetches int64  `json:"fetches"`
		Checks  int64  `json:"checks"`
		Version string `json:"version"`
	}{a.fetches.Load(), a.checks.Load(), a.store.Snapshot().version})
}

type faultMode struct {
	Mode string `json:"mode"`
}

func (a *api) getFault(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, faultMode{fault(a.fault.Load()).String()})
}

func (a *api) setFault(w http.ResponseWriter, r *http.Request) {
	var req faultMode
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, `want {"mode":"..."}: `+err.Error())
		return
	}
	f, ok := parseFault(req.Mode)
	if !ok {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("unknown mode %q: want one of %s", req.Mode, strings.Join(faultNames[:], ", ")))
		return
	}
	if old := fault(a.fault.Swap(int32(f))); old != f {
		a.log.Info("fault mode changed", "fault", f.String(), "was", old.String())
	}
	writeJSON(w, http.StatusOK, faultMode{f.String()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":"encode reply"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, struct {
		Error string `json:"error"`
	}{msg})
}

// serveHTTP serves h on ln until ctx is cancelled, then stops gracefully: the
// listener closes first, Serve returns, requests in flight finish (a hanging or
// huge GET /data is cut off), and only then does serveHTTP return.
func serveHTTP(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		srv.Close()
		return fmt.Errorf("serve http: %w", err)
	case <-ctx.Done():
	}
	ln.Close()
	<-served // an error about the closed listener: expected
	if err := srv.Shutdown(context.Background()); err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	return nil
}
