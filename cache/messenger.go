package cache

import (
	"context"

	"github.com/yolkgo/yolk/bus"
)

// Messenger is what the refresh protocol needs of a process's messenger: a
// *bus.Conn, or the process an application gets from package yolk.
type Messenger interface {
	ID() string
	On(event string, h bus.Handler) error
	RequestAgent(ctx context.Context, event string, data any) (bus.Message, error)
}
