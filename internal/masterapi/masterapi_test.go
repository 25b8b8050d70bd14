package masterapi

import (
	"strings"
	"testing"
)

func TestStateCheck(t *testing.T) {
	for _, tt := range []struct {
		st State
		ok bool
	}{
		{State{Version: "12", By: "push"}, true},
		{State{Version: `W/"x"`, By: "catchup"}, true},
		{State{Version: strings.Repeat("9", 256), By: "force"}, true},
		{State{Version: "", By: "push"}, false},
		{State{Version: strings.Repeat("9", 257), By: "push"}, false},
		{State{Version: "1\x1b[2J", By: "push"}, false},
		{State{Version: "1 2", By: "push"}, false},
		{State{Version: "é", By: "push"}, false},
		{State{Version: "1", By: "push\n"}, false},
		{State{Version: "1", By: strings.Repeat("a", 33)}, false},
	} {
		if err := tt.st.Check(); (err == nil) != tt.ok {
			t.Errorf("%+v.Check() = %v, want ok %v", tt.st, err, tt.ok)
		}
	}
}
