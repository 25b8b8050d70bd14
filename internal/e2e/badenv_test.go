package e2e

import (
	"bufio"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestBadEnvironment runs each binary once per variable it reads and per
// value of hostileValues. The rules it checks, one per variable below:
//
//   - a value that cannot be used exits 2 (a usage error) at once, naming the
//     variable on stderr, and never shows it when it is a secret;
//   - an empty value means the default (envDefault), and so does 0 where the
//     help says so (YOLK_WORKERS: usable CPUs, SOURCE_KEYS: no keys, the
//     intervals: off, YOLK_LISTEN_FD: none); the process starts;
//   - a well-formed value starts the process, however odd (a file name with
//     control characters, an id of "-1"): the OS or the bus decides later,
//     and the security tests show what the bus refuses;
//   - a default address may be held by another process (YOLK_HTTP_ADDR's
//     :7001, SOURCE_ADDR's 7002, SOURCE_NATS_ADDR's 4223): the process then
//     exits 1 or 2 naming the variable; at the default bus (127.0.0.1:4222)
//     another master may refuse an agent or a worker (exit 1, authorization);
//   - YOLK_LIFELINE_FD is internal (the supervisor sets it): a value that
//     does not name an inherited pipe is ignored;
//   - no value makes a process panic, and each case ends within envCaseTimeout.
//
// "Starts" is an event, not a pause: the master logs "master started", the
// source "source ready", and the agent and the workers, pointed at a bus
// that hangs up, log that they cannot connect yet, once their whole config
// is checked. A started process is stopped with SIGTERM and must exit.

// hostileValue is one value every variable gets.
type hostileValue struct{ name, value string }

var hostileValues = []hostileValue{
	{"empty", ""},
	{"minus one", "-1"},
	{"zero", "0"},
	{"1e999", "1e999"},
	{"20 nines", "99999999999999999999"},
	{"a word", "abc"},
	{"control characters", "a\tb\x01c\x7f"},
	{"a newline", "line1\nline2"},
	{"8 KiB", strings.Repeat("x", 8<<10)},
	{"a path out", "../../etc"},
	{"unicode", "ünïcödé ✓"},
}

// envOutcome is what a process does with a value.
type envOutcome int

const (
	exitsUsage    envOutcome = iota // exits 2 naming the variable
	startsUp                        // reaches its started event
	startsOrNames                   // starts, or exits 1 or 2 naming the variable (a default address is held)
	startsOrAuth                    // starts, or the bus at the default address refuses it (exit 1)
)

func (o envOutcome) String() string {
	return [...]string{"exit 2 naming it", "a start", "a start or an exit naming it", "a start or a refusal by the bus"}[o]
}

// envRule gives the outcome of each value of a variable.
type envRule func(v string) envOutcome

// validOnly: the given values and the empty one (the default) start, any
// other exits 2.
func validOnly(values ...string) envRule {
	return func(v string) envOutcome {
		if v == "" || slices.Contains(values, v) {
			return startsUp
		}
		return exitsUsage
	}
}

// anyValue starts, whatever the value.
func anyValue(string) envOutcome { return startsUp }

// longerThan: a value of more than n bytes exits 2, any other starts (a
// path: a unix socket's has at most 107 bytes, a file name 255).
func longerThan(n int) envRule {
	return func(v string) envOutcome {
		if len(v) > n {
			return exitsUsage
		}
		return startsUp
	}
}

// tokenValues: the values that are a single NATS subject token (a valid id,
// a valid subject) start; any other exits 2.
var tokenValues = validOnly("-1", "0", "1e999", "99999999999999999999", "abc")

// defaultAddress: empty is a default port that may be held; any other value
// is malformed.
func defaultAddress(v string) envOutcome {
	if v == "" {
		return startsOrNames
	}
	return exitsUsage
}

// defaultBus: empty is the default bus, where another master may answer;
// any other value is malformed.
func defaultBus(v string) envOutcome {
	if v == "" {
		return startsOrAuth
	}
	return exitsUsage
}

// requiredValue: empty exits 2, any other value starts (a user, a secret).
func requiredValue(v string) envOutcome {
	if v == "" {
		return exitsUsage
	}
	return startsUp
}

// envVarCase is how a binary is run for one variable.
type envVarCase struct {
	rule     envRule
	external bool // run in external mode (the variable matters only there)
	secret   bool // the value must never be shown
}

var (
	loggingVars = map[string]envVarCase{
		"YOLK_LOG_LEVEL":  {rule: validOnly()},
		"YOLK_LOG_FORMAT": {rule: validOnly()},
	}
	refreshVars = map[string]envVarCase{
		"YOLK_SOURCE_URL":       {rule: validOnly()},
		"YOLK_PUSH_URL":         {rule: validOnly()},
		"YOLK_PUSH_SUBJECT":     {rule: tokenValues},
		"YOLK_FORCE_INTERVAL":   {rule: validOnly("0")},
		"YOLK_PULL_INTERVAL":    {rule: validOnly("0")},
		"YOLK_FETCH_TIMEOUT":    {rule: validOnly()},
		"YOLK_SOURCE_MAX_BYTES": {rule: validOnly()},
	}
	// fleetVars join a fleet; without a cluster URL the others are not checked.
	fleetVars = map[string]envVarCase{
		"YOLK_CLUSTER_URL":    {rule: validOnly()},
		"YOLK_HOST":           {rule: anyValue},
		"YOLK_CLUSTER_DOMAIN": {rule: anyValue},
		"YOLK_LEASE_TTL":      {rule: validOnly("0")},
	}
	childVars = map[string]envVarCase{
		"YOLK_MODE":             {rule: validOnly()},
		"YOLK_HEALTH_SOCKET":    {rule: longerThan(107)},
		"YOLK_BUS_URL":          {rule: defaultBus},
		"YOLK_BUS_USER":         {rule: requiredValue},
		"YOLK_BUS_SECRET":       {rule: requiredValue, secret: true},
		"YOLK_ID":               {rule: tokenValues},
		"YOLK_READY_TIMEOUT":    {rule: validOnly()},
		"YOLK_SHUTDOWN_TIMEOUT": {rule: validOnly()},
		"YOLK_LIFELINE_FD":      {rule: anyValue},
	}
	// envVarRules are the variables each binary reads, as its --help lists
	// them, and the unlisted ones.
	envVarRules = map[string]map[string]envVarCase{
		"master": mergeVars(inExternalMode(loggingVars), refreshVars, inExternalMode(fleetVars), map[string]envVarCase{
			"YOLK_CLUSTER_USER":       {rule: anyValue, external: true},
			"YOLK_CLUSTER_PASSWORD":   {rule: anyValue, external: true, secret: true},
			"YOLK_CLUSTER_CREDS":      {rule: validOnly(), external: true},
			"YOLK_CLUSTER_CA":         {rule: anyValue, external: true},
			"YOLK_MODE":               {rule: validOnly()},
			"YOLK_HEALTH_SOCKET":      {rule: longerThan(107)},
			"YOLK_WORKERS":            {rule: validOnly("0")},
			"YOLK_HTTP_ADDR":          {rule: defaultAddress},
			"YOLK_BUS_URL":            {rule: validOnly()},
			"YOLK_AGENT_SECRET":       {rule: requiredValue, external: true, secret: true},
			"YOLK_WORKER_SECRET":      {rule: requiredValue, external: true, secret: true},
			"YOLK_RUN_DIR":            {rule: longerThan(255)},
			"YOLK_SHUTDOWN_TIMEOUT":   {rule: validOnly(), external: true},
			"YOLK_READY_TIMEOUT":      {rule: validOnly(), external: true},
			"YOLK_AGENT_BIN":          {rule: validOnly()},
			"YOLK_WORKER_BIN":         {rule: validOnly()},
			"YOLK_HANG_TIMEOUT":       {rule: validOnly("0")},
			"YOLK_ADMIN_ADDR":         {rule: defaultAddress, external: true},
			"YOLK_WORKER_MAX_RSS":     {rule: validOnly("0")},
			"YOLK_WORKER_MAX_RSS_FOR": {rule: validOnly()},
		}),
		"agent": mergeVars(loggingVars, refreshVars, childVars, fleetVars, map[string]envVarCase{
			"YOLK_AGENT_SECRET": {rule: requiredValue, external: true, secret: true},
		}),
		"worker": mergeVars(loggingVars, refreshVars, childVars, fleetVars, map[string]envVarCase{
			"YOLK_WORKER_SECRET": {rule: requiredValue, external: true, secret: true},
			"YOLK_HTTP_ADDR":     {rule: validOnly()}, // checked at start, though the worker listens once warm
			"YOLK_LISTEN_FD":     {rule: validOnly("0")},
			"YOLK_HANG_TIMEOUT":  {rule: validOnly("0")},
		}),
		"source": mergeVars(loggingVars, map[string]envVarCase{
			"SOURCE_ADDR":         {rule: defaultAddress},
			"SOURCE_NATS_ADDR":    {rule: defaultAddress},
			"SOURCE_SUBJECT":      {rule: tokenValues},
			"SOURCE_CHANGE_EVERY": {rule: validOnly("0")},
			"SOURCE_KEYS":         {rule: validOnly("0")},
		}),
	}
	// unlistedVars are read but not listed by --help: only the supervisor sets them.
	unlistedVars = []string{"YOLK_LIFELINE_FD"}
)

// inExternalMode runs the cases of m in external mode: the master starts no
// children there, which makes its start cheap.
func inExternalMode(m map[string]envVarCase) map[string]envVarCase {
	out := make(map[string]envVarCase)
	for k, c := range m {
		c.external = true
		out[k] = c
	}
	return out
}

func mergeVars(ms ...map[string]envVarCase) map[string]envVarCase {
	out := make(map[string]envVarCase)
	for _, m := range ms {
		maps.Copy(out, m)
	}
	return out
}

// envCaseTimeout bounds each case: the exit, or the start and then the stop.
const envCaseTimeout = 20 * time.Second

// badEnvBins returns a directory with the four binaries built without -race:
// a few hundred processes that mostly parse their environment and exit would
// spend most of the time starting the race runtime, and races need more than
// a config check to show. They are built as make build builds them (static,
// -trimpath), so that the build cache of make build serves. Built once per
// test binary, removed with binDir.
var badEnvBins = sync.OnceValues(func() (string, error) {
	if !raceEnabled {
		return binDir, nil
	}
	dir := filepath.Join(binDir, "plain")
	cmd := exec.Command("go", "build", "-trimpath", "-o", dir+"/", "../../cmd/master", "../../cmd/agent", "../../cmd/worker", "../../cmd/source")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("build: %v\n%s", err, out)
	}
	return dir, nil
})

// hangUpBus is a TCP listener that closes every connection at once: a bus that
// is never reached, so that a process that passed its config check says it
// cannot connect yet, and waits.
func hangUpBus(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() { // ends when the listener is closed
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return "nats://" + ln.Addr().String()
}

var helpVarLine = regexp.MustCompile(`(?m)^  ((?:YOLK|SOURCE)_[A-Z_]+)  `)

// TestBadEnvironment: see the rules at the top of this file.
func TestBadEnvironment(t *testing.T) {
	bins, err := badEnvBins()
	if err != nil {
		t.Fatal(err)
	}
	for bin, rules := range envVarRules {
		out, err := exec.Command(filepath.Join(bins, bin), "--help").Output()
		if err != nil {
			t.Fatalf("%s --help: %v", bin, err)
		}
		listed := make(map[string]bool)
		for _, m := range helpVarLine.FindAllStringSubmatch(string(out), -1) {
			listed[m[1]] = true
			if _, ok := rules[m[1]]; !ok {
				t.Errorf("%s --help lists %s, which has no rule in this test", bin, m[1])
			}
		}
		for v := range rules {
			if !listed[v] && !slices.Contains(unlistedVars, v) {
				t.Errorf("%s: this test has a rule for %s, which %s --help does not list", bin, v, bin)
			}
		}
	}

	bus := hangUpBus(t)
	closed := "http://127.0.0.1:" + fmt.Sprint(freePort(t))
	base := map[string]map[string]string{
		"master": {
			"YOLK_WORKERS": "1", "YOLK_HTTP_ADDR": "127.0.0.1:0", "YOLK_RUN_DIR": "run",
			"YOLK_AGENT_BIN": filepath.Join(bins, "agent"), "YOLK_WORKER_BIN": filepath.Join(bins, "worker"),
			"YOLK_READY_TIMEOUT": "10s", "YOLK_SHUTDOWN_TIMEOUT": "5s",
		},
		"agent":  {"YOLK_BUS_URL": bus, "YOLK_BUS_USER": "agent-user", "YOLK_BUS_SECRET": "agent-pass"},
		"worker": {"YOLK_BUS_URL": bus, "YOLK_BUS_USER": "worker-user", "YOLK_BUS_SECRET": "worker-pass"},
		"source": {"SOURCE_ADDR": "127.0.0.1:0", "SOURCE_NATS_ADDR": "127.0.0.1:0"},
	}
	for _, bin := range []string{"master", "agent", "worker"} {
		maps.Copy(base[bin], map[string]string{
			"YOLK_SOURCE_URL": closed, "YOLK_PUSH_URL": "nats://127.0.0.1:1", "YOLK_FETCH_TIMEOUT": "1s",
		})
	}
	external := map[string]map[string]string{
		"master": {
			"YOLK_MODE": "external", "YOLK_BUS_URL": "nats://127.0.0.1:0", "YOLK_HEALTH_SOCKET": "off",
			"YOLK_AGENT_SECRET": "agent-secret-1", "YOLK_WORKER_SECRET": "worker-secret-1",
		},
		"agent":  {"YOLK_MODE": "external", "YOLK_ID": "agent-1", "YOLK_HEALTH_SOCKET": "off", "YOLK_AGENT_SECRET": "agent-secret-1"},
		"worker": {"YOLK_MODE": "external", "YOLK_ID": "worker-1", "YOLK_HEALTH_SOCKET": "off", "YOLK_WORKER_SECRET": "worker-secret-1"},
	}
	started := map[string]string{
		"master": "master started", "agent": "bus: cannot connect yet", "worker": "bus: cannot connect yet", "source": "source ready",
	}

	start := time.Now()
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	cases := 0
	for _, bin := range slices.Sorted(maps.Keys(envVarRules)) {
		rules := envVarRules[bin]
		for _, name := range slices.Sorted(maps.Keys(rules)) {
			c := rules[name]
			for _, val := range hostileValues {
				env := maps.Clone(base[bin])
				env["GORACE"] = "atexit_sleep_ms=0"
				if c.external {
					maps.Copy(env, external[bin])
				}
				if name == "YOLK_ID" {
					delete(env, "YOLK_ID")
				}
				env[name] = val.value
				want := c.rule(val.value)
				cases++
				wg.Go(func() {
					sem <- struct{}{}
					defer func() { <-sem }()
					t.Run(bin+"/"+name+"/"+val.name, func(t *testing.T) {
						runEnvCase(t, filepath.Join(bins, bin), env, started[bin], name, val.value, c.secret, want)
					})
				})
			}
		}
	}
	wg.Wait()
	t.Logf("%d cases in %v", cases, time.Since(start).Round(time.Millisecond))
}

// runEnvCase runs path with env in a directory of its own (deep enough that
// "../../etc" stays in it) and checks that it does what want says.
func runEnvCase(t *testing.T, path string, env map[string]string, startedLine, name, value string, secret bool, want envOutcome) {
	dir := filepath.Join(t.TempDir(), "a", "b", "c")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(path)
	cmd.Dir = dir
	for _, k := range slices.Sorted(maps.Keys(env)) {
		cmd.Env = append(cmd.Env, k+"="+env[k])
	}
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	out := newLogs()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start: %v", err)
	}
	done := make(chan struct{})
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			out.add(sc.Text())
		}
		io.Copy(io.Discard, pr)
	}()
	go func() { cmd.Wait(); pw.Close(); close(done) }()
	defer func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
		<-read
	}()

	deadline := time.NewTimer(envCaseTimeout)
	defer deadline.Stop()
	hasStarted := false
	for wait := true; wait; {
		ch := out.nextLine()
		if strings.Contains(out.String(), startedLine) {
			hasStarted = true
			break
		}
		select {
		case <-done:
			<-read
			hasStarted = strings.Contains(out.String(), startedLine)
			wait = false
		case <-ch:
		case <-deadline.C:
			t.Fatalf("neither exited nor started within %v (want %v); output:\n%.2000s", envCaseTimeout, want, out)
		}
	}
	if hasStarted {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-deadline.C:
			t.Fatalf("started, then still running %v after SIGTERM; output:\n%.2000s", envCaseTimeout, out)
		}
	}
	<-read
	text := out.String()
	code := cmd.ProcessState.ExitCode()
	ok := hasStarted
	switch want {
	case exitsUsage:
		ok = !hasStarted && code == 2 && strings.Contains(text, name)
	case startsOrNames:
		ok = hasStarted || ((code == 1 || code == 2) && strings.Contains(text, name))
	case startsOrAuth:
		ok = hasStarted || (code == 1 && strings.Contains(text, "Authorization Violation"))
	}
	if !ok {
		t.Errorf("%s: started %v, exit %d; want %v; output:\n%.2000s", name, hasStarted, code, want, text)
	}
	for _, bad := range []string{"panic:", "goroutine ", "DATA RACE"} {
		if strings.Contains(text, bad) {
			t.Errorf("%s: the output has %q:\n%.4000s", name, bad, text)
		}
	}
	if secret && len(value) >= 6 && strings.Contains(text, value) {
		t.Errorf("%s: the output shows the secret value", name)
	}
}

// nextLine returns a channel that is closed when the next line arrives.
func (l *logs) nextLine() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.changed
}
