// Package yolk runs a Go service as egg.js runs a Node one: one master
// supervises one agent and N workers, which talk over a messenger (an
// embedded NATS bus), run schedules, and are started, restarted, reloaded
// without a failed request and stopped in order for you. You write the
// application; yolk runs the processes.
//
// An application is an [App] value: its workers' part (an http.Handler,
// messenger handlers, schedule tasks), its agent's part (background work done
// once for the whole service, such as the one connection to an upstream that
// every worker shares), lifecycle hooks, and its own configuration.
// [Main] makes it one program:
//
//	func main() {
//		yolk.Main(yolk.App{
//			Worker: func(w *yolk.Worker) error {
//				w.Handle(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
//					fmt.Fprintf(rw, "hello from worker %s\n", w.ID())
//				}))
//				return nil
//			},
//		})
//	}
//
// Run it and it is the master: it embeds the bus on a loopback port, mints a
// credential per process, starts itself again as the agent and as
// YOLK_WORKERS workers (one per usable CPU by default), and serves
// YOLK_HTTP_ADDR (:7001) from every worker at once. SIGHUP (or `prog reload`)
// replaces the workers one at a time, each new one ready before an old one
// stops; SIGTERM stops the workers, then the agent, then the bus; `prog
// status` lists every process. In containers (YOLK_MODE=external) the same
// program runs one role each: `prog master`, `prog agent`, `prog worker`.
//
// # The parts of a process
//
// App.Agent and App.Worker are setup functions: they get the process, an
// [*Agent] or a [*Worker], whose [Process] is the messenger (Broadcast,
// SendToApp, SendToAgent, SendTo, SendRandom, Request, RequestAgent, Gather,
// On, with the delivery promises of package bus) and where the hooks of the
// process's life are registered:
//
//   - [Process.Go]: background work for the process's lifetime;
//   - [Process.BeforeReady]: warm up; the process reports ready, and a worker
//     serves HTTP, only once every such hook has returned (YOLK_READY_TIMEOUT);
//   - [Process.OnServiceReady]: the whole service is ready (egg's egg-ready);
//   - [Process.BeforeClose]: the process stops, after a worker has finished
//     its requests (YOLK_SHUTDOWN_TIMEOUT);
//   - [Process.OnReconnect]: the bus connection came back; catch up.
//
// Schedules are declared once, next to their task ([Schedule]): the agent's
// timers fire them and the workers run them, in one worker or in all.
//
// The application's own configuration is a struct with env tags (App.Config),
// read in every process, listed by --help, and checked by the master before
// anything starts: a bad value exits 2 naming the variable.
//
// The examples: examples/counter (a hit counter that loses no count across
// reloads) and package cacheapp (egg's cache example: every worker serves a
// data set from memory, kept fresh by push, pull and force with one remote
// fetch per change).
package yolk
