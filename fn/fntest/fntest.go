package fntest

import (
	"bytes"
	"errors"
	"sync"
)

// ErrNoMessage is returned by Host.Recv when no message is queued: a native
// test has no deadline to wait for.
var ErrNoMessage = errors.New("fntest: no message queued")

// Host is an in-memory fn.Host: a map for the key-value store, a queue of
// messages for Recv, and a record of everything sent and logged. The zero
// value is ready to use; it is safe for concurrent use.
type Host struct {
	mu    sync.Mutex
	kv    map[string][]byte
	inbox [][]byte
	sent  []Message
	logs  []string
}

// Message is one Send recorded by a Host.
type Message struct {
	To  string
	Msg []byte
}

// Get implements fn.Host.
func (h *Host) Get(key string) ([]byte, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.kv[key]
	return bytes.Clone(v), ok, nil
}

// Put implements fn.Host; the last write wins.
func (h *Host) Put(key string, value []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.kv == nil {
		h.kv = make(map[string][]byte)
	}
	h.kv[key] = bytes.Clone(value)
	return nil
}

// Send implements fn.Host by recording the message.
func (h *Host) Send(to string, msg []byte) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.sent = append(h.sent, Message{To: to, Msg: bytes.Clone(msg)})
	return nil
}

// Recv implements fn.Host: it returns the oldest message queued with
// Deliver, or ErrNoMessage.
func (h *Host) Recv() ([]byte, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.inbox) == 0 {
		return nil, ErrNoMessage
	}
	m := h.inbox[0]
	h.inbox = h.inbox[1:]
	return m, nil
}

// Log implements fn.Host by recording msg.
func (h *Host) Log(msg string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.logs = append(h.logs, msg)
}

// Deliver queues msg for Recv.
func (h *Host) Deliver(msg []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.inbox = append(h.inbox, bytes.Clone(msg))
}

// Sent returns the messages sent so far, oldest first.
func (h *Host) Sent() []Message {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]Message(nil), h.sent...)
}

// Logs returns the lines logged so far, oldest first.
func (h *Host) Logs() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.logs...)
}
