package admin

import (
	"crypto/rand"
	"encoding/base64"
	"sort"
	"sync"
	"time"

	"matrixhs/storage"
)

// taskKeep is how long a finished task's status stays queryable (as
// Synapse: a day, or until the server restarts).
const taskKeep = 24 * time.Hour

// Task statuses, as Synapse names them.
const (
	taskScheduled = "scheduled"
	taskActive    = "active"
	taskComplete  = "complete"
	taskFailed    = "failed"
)

// task is a room deletion or history purge running in the background.
type task struct {
	id, roomID string
	history    bool // a history purge (else a room deletion)
	status     string
	err        string
	cause      error // err as the error it was, for the synchronous API
	shutdown   *shutdownResult
	progress   storage.PurgeProgress
	finished   time.Time
}

// tasks holds the background tasks of this process: at most one per room
// at a time, kept a day after they finish.
type tasks struct {
	mu   sync.Mutex
	byID map[string]*task
	now  func() time.Time
}

func newTasks(now func() time.Time) *tasks { return &tasks{byID: map[string]*task{}, now: now} }

// start registers a task for a room, unless one is still running there.
func (ts *tasks) start(roomID string, history bool) (*task, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.pruneLocked()
	for _, t := range ts.byID {
		if t.roomID == roomID && (t.status == taskScheduled || t.status == taskActive) {
			return nil, false
		}
	}
	t := &task{id: randomID(), roomID: roomID, history: history, status: taskScheduled}
	ts.byID[t.id] = t
	return t, true
}

// update changes a task under the lock.
func (ts *tasks) update(t *task, f func(*task)) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f(t)
	if t.status == taskComplete || t.status == taskFailed {
		t.finished = ts.now()
	}
}

// get returns a copy of a task.
func (ts *tasks) get(id string) (task, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.pruneLocked()
	t, ok := ts.byID[id]
	if !ok {
		return task{}, false
	}
	return *t, true
}

// ofRoom returns copies of a room's deletion tasks, oldest first.
func (ts *tasks) ofRoom(roomID string, history bool) []task {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.pruneLocked()
	var out []task
	for _, t := range ts.byID {
		if t.roomID == roomID && t.history == history {
			out = append(out, *t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (ts *tasks) pruneLocked() {
	for id, t := range ts.byID {
		if !t.finished.IsZero() && ts.now().Sub(t.finished) > taskKeep {
			delete(ts.byID, id)
		}
	}
}

func randomID() string {
	b := make([]byte, 12)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}
