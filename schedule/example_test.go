package schedule_test

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/yolkgo/yolk/schedule"
)

// The agent's Scheduler fires runs and a worker's Runner runs them. Here
// both live in one process, and a channel stands in for the bus.
func Example() {
	spec := schedule.Spec{Name: "pull_refresh", Interval: 10 * time.Millisecond, Type: schedule.Worker, Immediate: true}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	quiet := slog.New(slog.DiscardHandler)

	// In the agent: fire hands each run to the bus.
	bus := make(chan schedule.Run)
	sched, err := schedule.NewScheduler([]schedule.Spec{spec}, func(ctx context.Context, r schedule.Run) {
		select {
		case bus <- r:
		case <-ctx.Done():
		}
	}, quiet)
	if err != nil {
		fmt.Println(err)
		return
	}
	done := make(chan error, 1)
	go func() { done <- sched.Run(ctx) }()

	// In a worker: the Runner runs the task of each run received.
	runner := schedule.NewRunner(quiet)
	finished := make(chan string)
	err = runner.Handle(spec, func(ctx context.Context, r schedule.Run) error {
		finished <- fmt.Sprintf("%s run %d", r.Name, r.Seq)
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	for range 3 {
		if err := runner.Dispatch(ctx, <-bus); err != nil {
			fmt.Println(err)
		}
		fmt.Println(<-finished)
	}

	// Shutdown: cancel, then wait for the runs and the timers.
	cancel()
	runner.Wait()
	fmt.Println(<-done)
	// Output:
	// pull_refresh run 1
	// pull_refresh run 2
	// pull_refresh run 3
	// <nil>
}

func ExampleSpec_Validate() {
	spec := schedule.Spec{Name: "pull_refresh", Interval: 10 * time.Second, Cron: "0 * * * * *", Type: schedule.Worker}
	fmt.Println(spec.Validate())
	// Output: schedule "pull_refresh": interval and cron are both set
}
