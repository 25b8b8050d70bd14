package bus_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/bus/broker"
)

// The agent tells every worker to refresh; a worker handles it.
func Example() {
	quiet := slog.New(slog.DiscardHandler)
	b, err := broker.Start(broker.Config{Port: -1, Logger: quiet})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Shutdown()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := func(role bus.Role, id string) (*bus.Conn, error) {
		cred := b.Mint(role, id) // in fork mode the master mints one per child
		return bus.Dial(ctx, bus.Options{
			URL: b.ClientURL(), User: cred.User, Password: cred.Password,
			ID: id, Role: role, Logger: quiet,
		})
	}

	worker, err := dial(bus.RoleWorker, "1001")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer worker.Close()
	done := make(chan struct{})
	err = worker.On("refresh", func(_ context.Context, m bus.Message) (any, error) {
		var by string
		if err := m.Decode(&by); err != nil {
			return nil, err
		}
		fmt.Printf("worker %s: refresh by %s, from the %s %s\n", worker.ID(), by, m.Role, m.From)
		close(done)
		return nil, nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}

	agent, err := dial(bus.RoleAgent, "1000")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer agent.Close()
	if err := agent.SendToApp("refresh", "push"); err != nil {
		fmt.Println(err)
		return
	}
	<-done
	// Output: worker 1001: refresh by push, from the agent 1000
}
