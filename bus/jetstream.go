package bus

import "github.com/nats-io/nats.go/jetstream"

// JetStream returns the JetStream API on this connection, for the stores the
// broker keeps (broker.Config.Stores): what a process may do with it is what
// its role allows, the entries of those stores and nothing else. Its calls
// do not wait for a batch of events still pending (wire version 3): call
// [Conn.Flush] first when a write must reach the bus after the events this
// process sent before it.
func (c *Conn) JetStream() (jetstream.JetStream, error) {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, opErr("jetstream", err)
	}
	return js, nil
}
