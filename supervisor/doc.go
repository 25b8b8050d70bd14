// Package supervisor starts, watches and stops the child processes of a yolk
// master: one agent and N workers. It waits for each child to report ready,
// restarts a child that exits (at once when it had been ready for
// [Config.StableAfter], else after an exponential backoff with jitter, a crash
// loop logged loudly with the child's last stderr lines), stops the workers
// before the agent, replaces the workers one at a time on Reload, and
// replaces one child on Replace (a worker through the same rolling path; a
// stuck one with SIGQUIT, so that its goroutine dump lands in the log).
//
// It knows nothing of the bus: the master tells it that a child is ready with
// [Supervisor.Ready] (from the child's ready event), mints and revokes the
// child's credentials in [Config.Prepare], and logs the child's output it
// receives through [Config.Output].
//
// Every child gets the read end of a lifeline pipe as fd 3 ([LifelineFD]) and
// YOLK_LIFELINE_FD and YOLK_ROLE in its environment. Only the master holds the
// write end, so when the master dies, even by SIGKILL, every child sees EOF on
// fd 3 and exit (yolk's child runtime watches it: internal/lifeline).
// Pdeathsig (SIGKILL) is set too, as a second belt only: in Go it follows
// the thread that forked, not the process.
//
// Each child runs in its own process group. Signals go to the group, and
// once a child has exited, whatever is left of its group gets SIGKILL, so a
// child's own subprocesses do not outlive it.
package supervisor
