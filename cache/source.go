package cache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Source is the remote data source. Its methods are safe for concurrent use.
// Cancelling the context abandons the request and returns an error that
// wraps the context's error; neither method ever returns a partial snapshot.
type Source interface {
	// Fetch gets the whole data set unconditionally.
	Fetch(ctx context.Context) (*Snapshot, error)
	// Check fetches the data set only if its version is no longer version,
	// and returns ErrNotModified if it is. An empty version is like Fetch.
	Check(ctx context.Context, version string) (*Snapshot, error)
}

// ErrNotModified is returned by [Source.Check] when the data set has not
// changed since the version it was given.
var ErrNotModified = errors.New("cache: not modified")

// Defaults of [HTTPSource].
const (
	DefaultTimeout  = 5 * time.Second
	DefaultMaxBytes = 32 << 20
)

// HTTPSource is a [Source] that GETs a JSON object of key to value from URL.
// The response's strong or weak ETag is the version; Check sends it back in
// If-None-Match and takes 304 Not Modified for ErrNotModified. A 200 without
// a well-formed ETag is an error: a source that cannot say which version it
// serves must not poison caches. Set the fields before the first call and do
// not change them after; an HTTPSource is then safe for concurrent use.
type HTTPSource struct {
	URL      string        // e.g. http://127.0.0.1:7002/data
	Client   *http.Client  // nil: http.DefaultClient (Timeout applies either way)
	Timeout  time.Duration // per request, body included; 0: DefaultTimeout
	MaxBytes int64         // the largest body accepted; 0: DefaultMaxBytes. A larger one is an error, never a partial snapshot.
}

var _ Source = (*HTTPSource)(nil)

// Fetch gets the whole data set.
func (h *HTTPSource) Fetch(ctx context.Context) (*Snapshot, error) {
	return h.get(ctx, "")
}

// Check gets the data set if its version is not version: it returns
// ErrNotModified on 304 Not Modified.
func (h *HTTPSource) Check(ctx context.Context, version string) (*Snapshot, error) {
	return h.get(ctx, version)
}

func (h *HTTPSource) get(ctx context.Context, version string) (*Snapshot, error) {
	s, err := h.do(ctx, version)
	if err != nil {
		if errors.Is(err, ErrNotModified) {
			return nil, ErrNotModified
		}
		return nil, fmt.Errorf("cache: get %s: %w", h.URL, err)
	}
	return s, nil
}

func (h *HTTPSource) do(ctx context.Context, version string) (*Snapshot, error) {
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	limit := h.MaxBytes
	if limit <= 0 {
		limit = DefaultMaxBytes
	}
	client := h.Client
	if client == nil {
		client = http.DefaultClient
	}
	timedOut := fmt.Errorf("no complete answer within %v: %w", timeout, context.DeadlineExceeded)
	ctx, cancel := context.WithTimeoutCause(ctx, timeout, timedOut)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, h.URL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	if version != "" {
		req.Header.Set("If-None-Match", `"`+version+`"`)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, explain(ctx, timedOut, err)
	}
	defer resp.Body.Close()

	switch {
	case resp.StatusCode == http.StatusNotModified && version != "":
		return nil, ErrNotModified
	case resp.StatusCode != http.StatusOK:
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		if len(snippet) > 0 {
			return nil, fmt.Errorf("unexpected status %s: %q", resp.Status, bytes.TrimSpace(snippet))
		}
		return nil, fmt.Errorf("unexpected status %s", resp.Status)
	}
	etag := resp.Header.Get("ETag")
	newVersion, err := parseETag(etag)
	if err != nil {
		return nil, err
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("body of %d bytes exceeds the limit of %d", resp.ContentLength, limit)
	}
	body, err := readBody(resp, limit)
	if err != nil {
		return nil, explain(ctx, timedOut, err)
	}
	s, err := newSnapshot(newVersion, time.Now(), body)
	if err != nil {
		return nil, fmt.Errorf("version %s: %w", etag, err)
	}
	return s, nil
}

// explain drops the method and URL that net/http adds to an error (the
// caller names the URL once) and says so when the per-request timeout, not
// the caller, ended the request.
func explain(ctx context.Context, timedOut, err error) error {
	if uerr, ok := errors.AsType[*url.Error](err); ok {
		err = uerr.Err
	}
	if context.Cause(ctx) == timedOut && !errors.Is(err, timedOut) {
		return fmt.Errorf("%w: %w", timedOut, err)
	}
	return err
}

// readBody reads the whole body, at most limit bytes.
func readBody(resp *http.Response, limit int64) ([]byte, error) {
	var buf bytes.Buffer
	if n := resp.ContentLength; n > 0 {
		buf.Grow(int(n) + bytes.MinRead) // room to see EOF without growing
	}
	n, err := buf.ReadFrom(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read body after %d bytes: %w", n, err)
	}
	if n > limit {
		return nil, fmt.Errorf("body exceeds the limit of %d bytes", limit)
	}
	return buf.Bytes(), nil
}

// parseETag returns the opaque tag of a strong ("v") or weak (W/"v") ETag.
func parseETag(etag string) (string, error) {
	if etag == "" {
		return "", errors.New("no ETag in the response")
	}
	tag := strings.TrimPrefix(etag, "W/")
	if len(tag) < 2 || tag[0] != '"' || tag[len(tag)-1] != '"' {
		return "", fmt.Errorf("malformed ETag %q", etag)
	}
	v := tag[1 : len(tag)-1]
	if err := checkVersion(v); err != nil {
		return "", fmt.Errorf("malformed ETag %q: %w", etag, err)
	}
	return v, nil
}
