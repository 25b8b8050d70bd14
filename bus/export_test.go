package bus

// Bounds of a batch, for the tests.
const (
	MaxBatch     = maxBatch
	MaxBatchItem = maxBatchItem
)

// HoldBatch makes c batch every fire-and-forget event it sends, as during a
// burst whose flusher has not run yet, until the returned func is called:
// what it batches goes out only when another publish, Flush or Close comes.
// The tests use it to know which events share a batch.
func HoldBatch(c *Conn) (release func()) {
	c.batch.mu.Lock()
	c.batch.burst, c.batch.held = true, true
	c.batch.mu.Unlock()
	return func() {
		c.batch.mu.Lock()
		c.batch.held = false
		c.batch.mu.Unlock()
		select {
		case c.batch.wake <- struct{}{}:
		default:
		}
	}
}
