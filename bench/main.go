// Command bench is yolk's benchmark harness (issue 5). It builds the
// binaries, starts real processes as a user deploys them, and measures yolk
// side by side, in one run, with its baselines (../shared/anchors: egg's
// messenger path and a Node.js HTTP cluster) and its ceilings (raw NATS, a
// bare Go net/http handler): fan-out, round trip, refresh convergence (on one
// host, and across a fleet of hosts joined by a nats-server cluster), HTTP and
// lifecycle. It prints a comparison table and, with -out, rewrites
// BENCHMARKS.md, keeping the hand-written notes after the notes marker.
//
//	go run ./bench                      # full run (make bench adds -out BENCHMARKS.md)
//	go run ./bench -quick               # reduced run, under a minute (make bench-quick)
//	go run ./bench -only http,lifecycle # some sections only
//	go run ./bench -scale               # how the costs grow (make bench-scale adds -out BENCHMARKS.md)
//
// The same binary is also every helper process of a run: the yolk agent and
// worker peers (started by the real master, BENCH_PEER=1), the raw NATS
// server and clients, and the bare Go HTTP server (subcommands).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/yolkgo/yolk/supervisor"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if os.Getenv(envPeer) == "1" && os.Getenv(supervisor.EnvRole) != "" {
		err := runPeer(ctx, os.Environ())
		stop()
		exit("bench peer", err)
	}
	if len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-") {
		err := runRole(ctx, os.Args[1], os.Args[2:])
		stop()
		exit("bench "+os.Args[1], err)
	}
	err := runHarness(ctx, os.Args[1:])
	stop()
	cleanup()
	exit("bench", err)
}

func exit(name string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", name, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// runRole runs one helper process of a run.
func runRole(ctx context.Context, role string, args []string) error {
	need := func(n int) error {
		if len(args) != n {
			return fmt.Errorf("want %d arguments, got %d", n, len(args))
		}
		return nil
	}
	switch role {
	case "nats-server":
		return runNATSServer(ctx, os.Stdout)
	case "nats-sub":
		if err := need(2); err != nil {
			return err
		}
		i, err := strconv.Atoi(args[1])
		if err != nil {
			return err
		}
		return runNATSSub(ctx, args[0], i, os.Stdout)
	case "nats-pub":
		if err := need(2); err != nil {
			return err
		}
		plan, err := decodePlan(args[1])
		if err != nil {
			return err
		}
		return runNATSPub(ctx, args[0], plan, os.Stdout)
	case "go-http":
		if err := need(1); err != nil {
			return err
		}
		return runGoHTTP(ctx, args[0], os.Stdout)
	case "raw-http":
		if err := need(1); err != nil {
			return err
		}
		return runRawHTTP(ctx, args[0], os.Stdout)
	case "cluster": // addr procs per gomaxprocs role [args]
		if len(args) < 5 {
			return fmt.Errorf("want addr, procs, acceptors per process, gomaxprocs, role and its arguments, got %d arguments", len(args))
		}
		var n [3]int
		for i := range n {
			var err error
			if n[i], err = strconv.Atoi(args[1+i]); err != nil {
				return err
			}
		}
		return runCluster(ctx, args[0], n[0], n[1], n[2], args[4], args[5:], os.Stdout)
	case "raw-http-fd": // 1 (the acceptor socket is descriptor 3)
		if err := need(1); err != nil {
			return err
		}
		return runRawHTTPFD(ctx, 3, os.Stdout)
	case "loop-http": // loops (their acceptor sockets are descriptors 3, 4, ...)
		if err := need(1); err != nil {
			return err
		}
		loops, err := strconv.Atoi(args[0])
		if err != nil {
			return err
		}
		return runLoopHTTP(ctx, loops, os.Stdout)
	}
	return fmt.Errorf("unknown subcommand %q (run without one for the benchmarks; -h for help)", role)
}

// config is what one run measures, and how much of it.
type config struct {
	quick       bool
	only        map[string]bool // sections to run; empty means all
	workers     []int           // worker counts of fan-out, convergence and HTTP
	fanout      []fanSpec
	rtt         rttSpec
	changes     int // convergence: measured changes (after a few untimed ones)
	wrkDur      int // seconds
	wrkWarm     int // seconds
	rounds      int // with 2 workers, rounds of every system in turn (fan-out, round trip, HTTP: the figures with targets)
	wrkRoundDur int // seconds of each HTTP round
	coldReps    int
	rest        time.Duration // how long processes idle before "at rest" memory
	planTimeout time.Duration
	total       time.Duration // the whole run's deadline
	yolkEnv     []string      // added to every yolk master's environment (-yolk-env)
	profileDir  string        // -cpuprofile
	cpuStat     string        // -cpustat
}

func fullConfig() config {
	return config{
		workers: []int{2, 4},
		fanout:  []fanSpec{{Size: 128, N: 200_000, Reps: 1}, {Size: 4096, N: 25_000, Reps: 1}},
		rtt:     rttSpec{N: 5000, Warm: 500, Reps: 1}, // with 5 rounds: 25,000 trips a system, in under 5 minutes on a slow day
		changes: 200, wrkDur: 8, wrkWarm: 1, rounds: 5, wrkRoundDur: 3, coldReps: 5, rest: time.Second,
		planTimeout: 3 * time.Minute, total: 7 * time.Minute,
	}
}

func quickConfig() config {
	return config{
		quick:   true,
		workers: []int{2},
		fanout:  []fanSpec{{Size: 128, N: 50_000, Reps: 1}, {Size: 4096, N: 10_000, Reps: 1}},
		rtt:     rttSpec{N: 1000, Warm: 100, Reps: 1},
		changes: 30, wrkDur: 2, wrkWarm: 1, rounds: 3, wrkRoundDur: 1, coldReps: 2, rest: 300 * time.Millisecond,
		planTimeout: time.Minute, total: 150 * time.Second,
	}
}

// baselineRound returns baseline.js's arguments for its turn in a messenger
// round: the anchors' README figures without the pushes (with 4 workers,
// fewer round trips: only the 2-worker round trip is compared), 2
// repetitions, of which the first warms up (baselineWarm).
func (c config) baselineRound(workers int) baselineArgs {
	switch {
	case c.quick:
		return baselineArgs{Workers: workers, FanN: 20_000, RTTN: 1000, PushN: 0, Reps: 2}
	case workers == 2:
		return baselineArgs{Workers: workers, FanN: 100_000, RTTN: 5000, PushN: 0, Reps: 2}
	default:
		return baselineArgs{Workers: workers, FanN: 100_000, RTTN: 1000, PushN: 0, Reps: 2}
	}
}

// baselineWarm is how many of each baselineRound's repetitions warm up.
const baselineWarm = 1

// baselinePush returns baseline.js's arguments for its push convergence, run
// once after the rounds: the README's pushes and repetitions with 2 workers,
// one repetition with 4; its short fan-out and warm-up trips are not used.
func (c config) baselinePush(workers int) baselineArgs {
	switch {
	case c.quick:
		return baselineArgs{Workers: workers, FanN: 1000, RTTN: 0, PushN: c.changes, Reps: 1}
	case workers == 2:
		return baselineArgs{Workers: workers, FanN: 1000, RTTN: 0, PushN: 200, Reps: 3}
	default:
		return baselineArgs{Workers: workers, FanN: 1000, RTTN: 0, PushN: 200, Reps: 1}
	}
}

// roundsFor is how many rounds measure a worker count: c.rounds with 2
// workers, whose figures have targets; 1 with other counts.
func (c config) roundsFor(workers int) int {
	if workers == 2 {
		return c.rounds
	}
	return 1
}

// runs reports whether the run measures section: every one but the
// experiments (optIn) when -only is not given.
func (c config) runs(section string) bool {
	return c.only[section] || len(c.only) == 0 && !slices.Contains(optIn, section)
}

// optIn are the sections that run only when -only names them.
var optIn = []string{"http-tail"}

// sections, in the order they run.
var sections = []string{"messenger", "converge", "fleet", "http", "http-tail", "lifecycle"}

// harness is one run of the benchmarks.
type harness struct {
	cfg     config
	bins    binaries
	tmp     string // removed at the end
	anchors string // ../shared/anchors
	node    string // the node executable
	wrk     string // the wrk executable
	res     *Results
	start   time.Time
}

func (h *harness) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench [%5.1fs] %s\n", time.Since(h.start).Seconds(), fmt.Sprintf(format, args...))
}

// fail records a measurement that did not complete; the run goes on.
func (h *harness) fail(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.res.Failures = append(h.res.Failures, firstLine(msg))
	h.logf("FAILED: %s", msg)
}

// note records something worth knowing about this run's figures.
func (h *harness) note(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	h.res.Notes = append(h.res.Notes, msg)
	h.logf("note: %s", msg)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

func runHarness(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	quick := fs.Bool("quick", false, "a reduced run, under a minute")
	out := fs.String("out", "", "rewrite this markdown file (BENCHMARKS.md) with the results, keeping its notes")
	jsonOut := fs.String("json", "", "write the raw results as JSON here (default: bench/results.json, or a temporary file with -quick)")
	only := fs.String("only", "", "comma-separated sections to run: "+strings.Join(sections, ", "))
	anchors := fs.String("anchors", "", "the baselines' directory (default: ../shared/anchors beside the repository)")
	scale := fs.Bool("scale", false, "measure how the costs grow (fan-out against workers, convergence and memory against data size, fetches against workers) instead of the usual sections; with -out, rewrite only the scale section of that file and write its plots beside it (make bench-scale)")
	rounds := fs.Int("rounds", 0, "rounds of every system with 2 workers (default: 5, 3 with -quick)")
	cpuStat := fs.String("cpustat", "", "a file to which every fan-out run appends, as a JSON line, the CPU time and read and write system calls per message of the server, the sender and the receivers, counted inside the run (from /proc)")
	profileDir := fs.String("cpuprofile", "", "a directory where every fan-out receiver (yolk worker, raw NATS subscriber) writes a CPU profile of each run, for go tool pprof with the bench binary")
	var yolkEnv []string
	fs.Func("yolk-env", "`NAME=value` added to every yolk master's environment, which its agent and workers inherit (repeatable; for experiments such as GOGC=200)", func(v string) error {
		if k, _, ok := strings.Cut(v, "="); !ok || k == "" {
			return fmt.Errorf("want NAME=value, got %q", v)
		}
		yolkEnv = append(yolkEnv, v)
		return nil
	})
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	cfg := fullConfig()
	if *quick {
		cfg = quickConfig()
	}
	cfg.yolkEnv = yolkEnv
	if *rounds > 0 {
		cfg.rounds = *rounds
	}
	sc := fullScaleConfig()
	if *quick {
		sc = quickScaleConfig()
	}
	if *scale {
		cfg.total = sc.total
	}
	if *profileDir != "" {
		dir, err := filepath.Abs(*profileDir)
		if err == nil {
			err = os.MkdirAll(dir, 0o755)
		}
		if err != nil {
			return fmt.Errorf("-cpuprofile: %w", err)
		}
		cfg.profileDir = dir
	}
	if *cpuStat != "" {
		f, err := filepath.Abs(*cpuStat)
		if err != nil {
			return fmt.Errorf("-cpustat: %w", err)
		}
		cfg.cpuStat = f
	}
	if *only != "" {
		cfg.only = map[string]bool{}
		for s := range strings.SplitSeq(*only, ",") {
			if !slices.Contains(sections, s) {
				return fmt.Errorf("-only: unknown section %q (want %s)", s, strings.Join(sections, ", "))
			}
			cfg.only[s] = true
		}
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	h := &harness{cfg: cfg, start: time.Now(), anchors: *anchors}
	h.res = &Results{Command: commandLine(args), Date: time.Now().UTC().Truncate(time.Second), Quick: cfg.quick, Params: cfg.params()}
	if h.anchors == "" {
		h.anchors = filepath.Join(filepath.Dir(root), "shared", "anchors")
	}
	if err := h.checkTools(ctx); err != nil {
		return err
	}
	h.res.Machine = h.machine(ctx)

	interrupted := ctx // cancelled by SIGINT or SIGTERM only
	ctx, cancel := context.WithTimeout(ctx, cfg.total)
	defer cancel()
	if h.tmp, err = os.MkdirTemp("", "yolk-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(h.tmp)
	defer cleanup() // runs first: every process ends before its run directory goes
	binDir := binCacheDir(root, h.tmp)
	h.logf("building master, agent, worker, source and nats-server into %s (CGO_ENABLED=0, no -race)", binDir)
	if h.bins, err = buildBinaries(ctx, root, binDir); err != nil {
		return err
	}
	if *scale {
		return h.runScale(ctx, interrupted, sc, *out, *jsonOut)
	}

	steps := []struct {
		section string
		run     func(workers int)
		each    bool // once per worker count
	}{
		{"messenger", func(w int) { h.messenger(ctx, w) }, true},
		{"converge", func(w int) { h.converge(ctx, w) }, true},
		{"fleet", func(int) { h.fleet(ctx) }, false},
		{"http", func(w int) { h.httpSection(ctx, w) }, true},
		{"http-tail", func(int) { h.httpTail(ctx) }, false},
		{"lifecycle", func(int) { h.lifecycle(ctx) }, false},
	}
	for _, s := range steps {
		if !cfg.runs(s.section) {
			continue
		}
		ws := cfg.workers
		if !s.each {
			ws = ws[:1]
		}
		for _, w := range ws {
			if ctx.Err() == nil {
				s.run(w)
			}
		}
	}
	if ctx.Err() != nil {
		h.fail("the run was cut short: %v", context.Cause(ctx))
	}
	h.res.Machine.LoadAfter = loadAverage()
	h.res.Took = time.Since(h.start).Round(100 * time.Millisecond).String()
	h.logf("done in %s", h.res.Took)
	if interrupted.Err() != nil && *out != "" {
		h.logf("interrupted: %s is left as it was", *out)
		*out = ""
	}
	return h.finish(root, *out, *jsonOut)
}

// finish prints the report and writes the JSON results and the markdown file.
func (h *harness) finish(root, out, jsonOut string) error {
	h.res.Targets = roundTargets(reportTables(h.res))
	rep := renderReport(h.res)
	fmt.Println(rep)
	if jsonOut == "" {
		jsonOut = filepath.Join(root, "bench", "results.json")
		if h.cfg.quick {
			jsonOut = filepath.Join(os.TempDir(), "yolk-bench-quick.json")
		}
	}
	var errs []error
	if err := writeJSON(jsonOut, h.res); err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintf(os.Stderr, "bench: raw results in %s\n", jsonOut)
	}
	if out != "" {
		if err := writeMarkdown(out, rep); err != nil {
			errs = append(errs, err)
		} else {
			fmt.Fprintf(os.Stderr, "bench: wrote %s\n", out)
		}
	}
	if len(h.res.Failures) > 0 {
		errs = append(errs, fmt.Errorf("%d measurements failed: %s", len(h.res.Failures), strings.Join(h.res.Failures, "; ")))
	}
	return errors.Join(errs...)
}

// commandLine is the command that made the results, as the report shows it.
func commandLine(args []string) string {
	if m := os.Getenv("BENCH_MAKE_TARGET"); m != "" {
		return "make " + m + " (CGO_ENABLED=0 go run -trimpath ./bench " + strings.Join(args, " ") + ")"
	}
	return strings.TrimSpace("go run ./bench " + strings.Join(args, " "))
}

func (c config) params() map[string]string {
	var fan, base, push []string
	for _, f := range c.fanout {
		fan = append(fan, fmt.Sprintf("%d messages of %d B", f.N, f.Size))
	}
	reps := plural(c.rounds, "round") + " with 2 workers (yolk, raw NATS and the baseline in turn, each round starting one later), 1 with more; in each, fresh processes warm up with an untimed run of a quarter as many messages"
	for _, w := range c.workers {
		base = append(base, "node baseline.js "+strings.Join(c.baselineRound(w).list(), " "))
		push = append(push, "node baseline.js "+strings.Join(c.baselinePush(w).list(), " "))
	}
	return map[string]string{
		"workers":     fmt.Sprint(c.workers),
		"fanout":      strings.Join(fan, " and ") + ", " + reps,
		"rtt":         fmt.Sprintf("%d trips after %d warm-up ones in each round", c.rtt.N, c.rtt.Warm),
		"changes":     strconv.Itoa(c.changes),
		"wrk":         fmt.Sprintf("wrk -t2 -c64 -d%ds --latency -s rotate.lua` (100 keys in turn) after a %d s warm-up run; with 2 workers, %s of every system in turn (each round starting one later), %d s each (each figure the median round)", c.wrkDur, c.wrkWarm, plural(c.rounds, "round"), c.wrkRoundDur),
		"coldStarts":  strconv.Itoa(c.coldReps),
		"baseline":    strings.Join(base, "`, `"),
		"basePush":    strings.Join(push, "`, `"),
		"rounds":      strconv.Itoa(c.rounds),
		"restSeconds": strconv.FormatFloat(c.rest.Seconds(), 'f', -1, 64),
	}
}

// checkTools finds node, wrk (installing it with apt-get when root) and the
// anchors, or says clearly what is missing.
func (h *harness) checkTools(ctx context.Context) error {
	for _, f := range []string{"egg-ipc/baseline.js", "node-http/cluster-http.js"} {
		if _, err := os.Stat(filepath.Join(h.anchors, f)); err != nil {
			return fmt.Errorf("the baselines are missing: %w (give their directory with -anchors)", err)
		}
	}
	var err error
	if h.node, err = exec.LookPath("node"); err != nil {
		return errors.New("node is not installed: the baselines need it (apt-get install -y nodejs)")
	}
	if h.wrk, err = exec.LookPath("wrk"); err == nil {
		return nil
	}
	if os.Geteuid() != 0 {
		return errors.New("wrk is not installed and the harness is not root: run `sudo apt-get install -y wrk`, then again")
	}
	h.logf("wrk is missing: apt-get install -y wrk")
	ictx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	install := func() error {
		cmd := exec.CommandContext(ictx, "apt-get", "install", "-y", "-qq", "wrk")
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s", err, lastLines(string(out), 5))
		}
		return nil
	}
	if err := install(); err != nil {
		h.logf("apt-get install failed (%v): apt-get update, then again", err)
		if out, err := exec.CommandContext(ictx, "apt-get", "update", "-qq").CombinedOutput(); err != nil {
			return fmt.Errorf("apt-get update: %w: %s", err, lastLines(string(out), 5))
		}
		if err := install(); err != nil {
			return fmt.Errorf("apt-get install -y wrk: %w", err)
		}
	}
	if h.wrk, err = exec.LookPath("wrk"); err != nil {
		return errors.New("wrk is still not on PATH after apt-get install -y wrk")
	}
	return nil
}

// plural returns "1 run", "3 runs".
func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// machine describes this machine and the tools' versions.
func (h *harness) machine(ctx context.Context) Machine {
	out := func(name string, args ...string) string {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		b, _ := exec.CommandContext(cctx, name, args...).CombinedOutput() // wrk -v exits 1
		return strings.TrimSpace(firstLine(string(b)))
	}
	wrk, _, _ := strings.Cut(out(h.wrk, "-v"), " Copyright")
	wrk = strings.TrimPrefix(wrk, "wrk ")
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return Machine{
		CPUs:       runtime.NumCPU(),
		OS:         runtime.GOOS + "/" + runtime.GOARCH,
		Kernel:     strings.TrimSpace(string(kernel)),
		Go:         runtime.Version(),
		Node:       out(h.node, "--version"),
		Wrk:        strings.TrimSpace(wrk),
		LoadBefore: loadAverage(),
	}
}

// loadAverage returns the 1, 5 and 15 minute load averages of /proc/loadavg.
func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	return strings.Join(f[:min(3, len(f))], " ")
}
