package master

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/yolkgo/yolk/bus"
	"github.com/yolkgo/yolk/internal/cli"
	"github.com/yolkgo/yolk/internal/masterapi"
	"github.com/yolkgo/yolk/supervisor"
)

// processStatus is one row of `master status`.
type processStatus struct {
	Role     string    `json:"role"`
	ID       string    `json:"id"`
	PID      int       `json:"pid"`
	Slot     int       `json:"slot"` // a worker's place, 0 to N-1, kept across restarts and reloads; in JSON, only a worker's
	State    string    `json:"state"`
	Started  time.Time `json:"started"`
	Restarts int       `json:"restarts"`
	// What the process uses, from its last heartbeat (the master's own for the master).
	RSS        uint64    `json:"rss,omitempty"`        // bytes
	CPU        float64   `json:"cpu,omitempty"`        // seconds used so far
	CPUPercent float64   `json:"cpuPercent,omitempty"` // of one core, since the heartbeat before
	Goroutines int       `json:"goroutines,omitempty"` // runtime.NumGoroutine
	Wire       int       `json:"wire,omitempty"`       // the bus's wire version it sends
	Beat       time.Time `json:"beat,omitzero"`        // when its last heartbeat came
	// Cache is what the process reported it serves (yolk.Process.Report), with
	// when the report came.
	Cache    *masterapi.State `json:"cache,omitempty"`
	Reported time.Time        `json:"reported,omitzero"`
}

// MarshalJSON leaves the slot out of a row other than a worker's: the
// master and the agent have none.
func (p processStatus) MarshalJSON() ([]byte, error) {
	type plain processStatus // without this method
	var slot *int
	if p.Role == string(bus.RoleWorker) {
		slot = &p.Slot
	}
	return json.Marshal(struct {
		plain
		Slot *int `json:"slot,omitempty"` // shadows plain's
	}{plain(p), slot})
}

// statusReply is the master's answer to a status request.
type statusReply struct {
	Master    processStatus   `json:"master"`
	Mode      string          `json:"mode"`
	Bus       string          `json:"bus"`
	Reloading bool            `json:"reloading"`
	Children  []processStatus `json:"children"`
	Fleet     *fleetStatus    `json:"fleet,omitempty"`
	// Health is "ok", or what is wrong ("degraded: ...", "starting: ...").
	Health string `json:"health"`
	// Timeline is the last changes, oldest first: when each reached each worker.
	Timeline []change `json:"timeline"`
	// Rates are the children's messenger calls per second, by verb, over the
	// last few heartbeats.
	Rates map[string]float64 `json:"rates"`
	// Schedules are the agent's schedules, each with the last run a worker
	// reported.
	Schedules []scheduleStatus `json:"schedules"`
	Now       time.Time        `json:"now"`
}

// readiness says whether the service is ready: the agent and at least one
// worker are. Its error says what is missing.
func readiness(ps []processStatus) error {
	agent, workers := false, 0
	for _, p := range ps {
		if p.State != supervisor.StateReady {
			continue
		}
		switch p.Role {
		case "agent":
			agent = true
		case "worker":
			workers++
		}
	}
	switch {
	case !agent && workers == 0:
		return errors.New("neither the agent nor a worker is ready")
	case !agent:
		return errors.New("the agent is not ready")
	case workers == 0:
		return errors.New("no worker is ready")
	}
	return nil
}

func childStatuses(cs []supervisor.ChildStatus) []processStatus {
	out := make([]processStatus, 0, len(cs))
	for _, c := range cs {
		out = append(out, processStatus{
			Role: c.Role, ID: strconv.Itoa(c.PID), PID: c.PID, Slot: c.Slot, State: c.State,
			Started: c.Started, Restarts: c.Restarts,
		})
	}
	return out
}

// dialMaster finds the running master through its state file and connects to its
// bus with the control credential.
func dialMaster(ctx context.Context, cfg config) (*bus.Conn, error) {
	st, err := readState(cfg.RunDir)
	if err != nil {
		return nil, err
	}
	if !alive(st.PID) {
		return nil, fmt.Errorf("%w (stale state file in %s names pid %d)", errNoMaster, cfg.RunDir, st.PID)
	}
	log, err := cfg.NewLogger(io.Discard)
	if err != nil {
		return nil, err
	}
	dctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := bus.Dial(dctx, bus.Options{
		URL: st.Bus, User: st.User, Password: st.Secret, ID: "ctl", Role: bus.RoleControl, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("reach master (pid %d) at %s: %w", st.PID, st.Bus, err)
	}
	return conn, nil
}

func askStatus(ctx context.Context, conn *bus.Conn) (statusReply, error) {
	var st statusReply
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	m, err := conn.RequestMaster(rctx, "status", nil)
	if err != nil {
		return st, fmt.Errorf("ask status: %w", err)
	}
	if err := m.Decode(&st); err != nil {
		return st, fmt.Errorf("decode status: %w", err)
	}
	return st, nil
}

func status(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stdout)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return cli.Usagef("status: %v", err)
	}
	conn, err := dialMaster(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	st, err := askStatus(ctx, conn)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fleet := ""
	if st.Fleet != nil {
		fleet = "\tFLEET"
	}
	fmt.Fprintf(stdout, "health: %s\n\n", st.Health)
	fmt.Fprintln(tw, "ROLE\tID\tSTATE\tUPTIME\tRESTARTS\tRSS\tCPU\tVERSION\tBY\tUPDATED"+fleet)
	for _, p := range append([]processStatus{st.Master}, st.Children...) {
		up, rss, cpu := "-", "-", "-"
		if !p.Started.IsZero() && p.State != stateMissing {
			up = now.Sub(p.Started).Round(time.Second).String()
		}
		if !p.Beat.IsZero() {
			rss, cpu = mebibytes(p.RSS), fmt.Sprintf("%.1f%%", p.CPUPercent)
		}
		id := p.ID
		if id == "" {
			id = "-"
		}
		version, by, updated, part := "-", "-", "-", "-"
		if p.Cache != nil {
			version, by = p.Cache.Version, p.Cache.By
			updated = now.Sub(p.Cache.UpdatedAt).Round(time.Second).String() + " ago"
			if p.Cache.Fleet != "" {
				part = p.Cache.Fleet
			}
		}
		if fleet == "" {
			part = ""
		} else {
			part = "\t" + part
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s%s\n", p.Role, id, p.State, up, p.Restarts, rss, cpu, version, by, updated, part)
	}
	if st.Reloading {
		fmt.Fprintln(tw, "(a rolling reload is under way)")
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if f := st.Fleet; f != nil {
		link := "up"
		if !f.Link {
			link = "down"
		}
		fmt.Fprintf(stdout, "\nfleet: host %s, link to the cluster %s\n", f.Host, link)
		if f.Err != "" {
			fmt.Fprintf(stdout, "  %s\n", f.Err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		if len(f.Leases) > 0 {
			fmt.Fprintln(tw, "LEASE\tHOLDER\tFENCE")
		}
		for _, l := range f.Leases {
			holder := l.Holder
			if holder == "" {
				holder = "(given up)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\n", l.Name, holder, l.Fence)
		}
		return tw.Flush()
	}
	return nil
}

// mebibytes shows a size in MiB, as ps and top readers expect.
func mebibytes(n uint64) string { return fmt.Sprintf("%.1fMiB", float64(n)/(1<<20)) }

func reloadCmd(ctx context.Context, cfg config, args []string, stdout io.Writer) error {
	if len(args) > 0 {
		return cli.Usagef("reload: unexpected argument %q", args[0])
	}
	conn, err := dialMaster(ctx, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if _, err := conn.RequestMaster(rctx, "reload", nil); err != nil {
		return fmt.Errorf("reload: %w", err)
	}
	fmt.Fprintln(stdout, "rolling reload started; `master status` shows its progress")
	return nil
}
