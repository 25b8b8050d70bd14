package bus

import "github.com/nats-io/nats.go/jetstream"

// JetStream returns the JetStream API on this connection, for the stores the
// broker keeps (broker.Config.Stores): what a process may do with it is what
// its role allows, the entries of those stores and nothing else.
func (c *Conn) JetStream() (jetstream.JetStream, error) {
	js, err := jetstream.New(c.nc)
	if err != nil {
		return nil, opErr("jetstream", err)
	}
	return js, nil
}
