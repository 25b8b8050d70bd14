// Package fleetrig runs the pieces of a yolk fleet on one machine as real OS
// processes: a NATS cluster of nats-server nodes with JetStream (domain fleet) and a
// leaf node listener each, any other program (the source, the masters) in a process
// group of its own with its output prefixed by its name, and a TCP proxy that can cut
// a link and restore it. make fleet (cmd/fleet) and the fleet's end-to-end tests
// use it.
//
// It knows nothing of yolk's packages: it writes nats-server config files, starts,
// stops, kills and restarts processes, and waits for readiness by asking the real
// thing (a client connection, a JetStream request) under a deadline, never by
// sleeping. It is a test and development rig, not a way to run NATS in production.
package fleetrig
