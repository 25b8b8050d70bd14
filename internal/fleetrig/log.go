package fleetrig

import (
	"bytes"
	"fmt"
	"io"
	"sync"
)

// Log merges the output of many processes into one writer, a whole line at a time,
// each line prefixed by the name of the process that wrote it. It is safe for
// concurrent use.
type Log struct {
	mu sync.Mutex
	w  io.Writer
	// width is the longest name seen, so that the lines' text lines up.
	width int
}

// NewLog returns a Log that writes to w. The names of writers to come, if given,
// align the lines from the first one.
func NewLog(w io.Writer, names ...string) *Log {
	l := &Log{w: w}
	for _, n := range names {
		l.width = max(l.width, len(n))
	}
	return l
}

// Writer returns a writer whose every line goes to the log as "name | line". A line
// is written once its newline arrives; Close writes what is left of an unfinished
// one. The writer is safe for concurrent use (exec.Cmd copies a process's stdout
// and stderr from two goroutines).
func (l *Log) Writer(name string) *LineWriter {
	l.mu.Lock()
	l.width = max(l.width, len(name))
	l.mu.Unlock()
	return &LineWriter{log: l, name: name}
}

// Printf writes one message as a line of name, such as the rig's own news.
func (l *Log) Printf(name, format string, args ...any) {
	l.write(name, fmt.Appendf(nil, format, args...))
}

// write writes one line, padding the name to the longest one seen.
func (l *Log) write(name string, line []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b bytes.Buffer
	b.WriteString(name)
	for range l.width - len(name) {
		b.WriteByte(' ')
	}
	b.WriteString(" | ")
	b.Write(line)
	if len(line) == 0 || line[len(line)-1] != '\n' {
		b.WriteByte('\n')
	}
	l.w.Write(b.Bytes()) // a log has no one to report a failed write to
}

// LineWriter is one process's writer into a Log.
type LineWriter struct {
	log  *Log
	name string
	mu   sync.Mutex
	buf  []byte
}

// Write writes each complete line of p to the log and keeps the rest for later.
func (w *LineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.log.write(w.name, w.buf[:i+1])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) == 0 {
		w.buf = nil // let a large line's array go
	}
	return len(p), nil
}

// Close writes an unfinished last line, if any. The writer may be used again.
func (w *LineWriter) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.log.write(w.name, w.buf)
		w.buf = nil
	}
	return nil
}
