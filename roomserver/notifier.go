package roomserver

import "sync"

// Notifier wakes waiters (long-polling /sync) when new stream positions
// commit. Waiters take the current channel and are woken by its closing.
type Notifier struct {
	mu  sync.Mutex
	pos int64
	ch  chan struct{}
}

// NewNotifier starts at pos.
func NewNotifier(pos int64) *Notifier { return &Notifier{pos: pos, ch: make(chan struct{})} }

// Notify records that everything up to pos is committed and wakes all waiters.
func (n *Notifier) Notify(pos int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if pos <= n.pos {
		return
	}
	n.pos = pos
	close(n.ch)
	n.ch = make(chan struct{})
}

// Wait returns the committed position and a channel closed at the next Notify.
func (n *Notifier) Wait() (int64, <-chan struct{}) {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.pos, n.ch
}
