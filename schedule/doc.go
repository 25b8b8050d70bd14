// Package schedule decides when jobs fire and runs them without overlap. It
// knows nothing of processes or the bus: the agent passes a fire function that
// dispatches each run, and the worker passes each run it receives to a Runner.
//
// A [Spec] describes one schedule: a name, either an Interval or a Cron
// expression with a seconds field, and a [Type] saying whether a run goes to
// one worker or to every worker. The application registers the same specs in
// the agent, where a [Scheduler] owns the timers and calls the fire function
// for each [Run], and in every worker, where a [Runner] runs the task for each
// Run it is given, with a deadline, never two runs of one schedule at once.
//
// A tick missed because the fire function was slow, or because the process
// was stopped, is skipped rather than queued: a schedule fires at most once per
// tick and never catches up in a burst.
package schedule
