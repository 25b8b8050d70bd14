package master

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"slices"
	"strconv"
)

// forwarder returns the supervisor's Output hook: each stderr line of a child is
// logged again by the master with a child attribute. A JSON record keeps its level,
// message and attributes; any other line (the standard log package's, a panic)
// is logged at INFO as it is.
func forwarder(log *slog.Logger) func(role string, pid int, line []byte) {
	return func(role string, pid int, line []byte) {
		child := slog.String("child", role+"/"+strconv.Itoa(pid))
		var rec map[string]any
		if len(line) == 0 || line[0] != '{' || json.Unmarshal(line, &rec) != nil {
			log.LogAttrs(context.Background(), slog.LevelInfo, string(line), child)
			return
		}
		level := slog.LevelInfo
		if s, ok := rec["level"].(string); ok {
			_ = level.UnmarshalText([]byte(s))
		}
		msg, _ := rec["msg"].(string)
		attrs := make([]slog.Attr, 0, len(rec))
		attrs = append(attrs, child)
		for _, k := range slices.Sorted(maps.Keys(rec)) {
			switch k {
			case "time", "level", "msg", "proc", "id":
				continue
			}
			attrs = append(attrs, slog.Any(k, rec[k]))
		}
		log.LogAttrs(context.Background(), level, msg, attrs...)
	}
}
