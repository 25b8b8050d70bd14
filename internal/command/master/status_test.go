package master

import (
	"strings"
	"testing"
)

func TestCacheStateCheck(t *testing.T) {
	for _, tt := range []struct {
		st cacheState
		ok bool
	}{
		{cacheState{Version: "12", By: "push"}, true},
		{cacheState{Version: `W/"x"`, By: "catchup"}, true},
		{cacheState{Version: strings.Repeat("9", 256), By: "force"}, true},
		{cacheState{Version: "", By: "push"}, false},
		{cacheState{Version: strings.Repeat("9", 257), By: "push"}, false},
		{cacheState{Version: "1\x1b[2J", By: "push"}, false},
		{cacheState{Version: "1 2", By: "push"}, false},
		{cacheState{Version: "é", By: "push"}, false},
		{cacheState{Version: "1", By: "push\n"}, false},
		{cacheState{Version: "1", By: strings.Repeat("a", 33)}, false},
	} {
		if err := tt.st.check(); (err == nil) != tt.ok {
			t.Errorf("%+v.check() = %v, want ok %v", tt.st, err, tt.ok)
		}
	}
}
