package admin

import (
	"crypto/rand"
	"encoding/base64"
	"maps"
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

// Task kinds.
const (
	taskDeleteRoom   = "delete_room"
	taskPurgeHistory = "purge_history"
	taskRedactUser   = "redact_user"
)

// task is a room deletion, history purge or redaction of a user's events
// running in the background.
type task struct {
	id, roomID string // roomID: the user ID for a redaction
	kind       string
	status     string
	err        string
	cause      error // err as the error it was, for the synchronous API
	shutdown   *shutdownResult
	progress   storage.PurgeProgress
	// failedRedactions maps event IDs to why they were not redacted.
	failedRedactions  map[string]string
	started, finished time.Time
}

// tasks holds the background tasks of this process: at most one per room
// at a time, kept a day after they finish.
type tasks struct {
	mu   sync.Mutex
	byID map[string]*task
	now  func() time.Time
}

func newTasks(now func() time.Time) *tasks { return &tasks{byID: map[string]*task{}, now: now} }

// start registers a task of a kind for a room (or user), unless a task is
// still running there (a deletion and a history purge of one room never
// overlap).
func (ts *tasks) start(roomID, kind string) (*task, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.pruneLocked()
	for _, t := range ts.byID {
		if t.roomID == roomID && (t.status == taskScheduled || t.status == taskActive) {
			return nil, false
		}
	}
	t := &task{id: randomID(), roomID: roomID, kind: kind, status: taskScheduled}
	ts.byID[t.id] = t
	return t, true
}

// update changes a task under the lock.
func (ts *tasks) update(t *task, f func(*task)) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	f(t)
	if t.status == taskActive && t.started.IsZero() {
		t.started = ts.now()
	}
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
	out := *t
	out.failedRedactions = maps.Clone(t.failedRedactions)
	return out, true
}

// ofRoom returns copies of a room's tasks of a kind, oldest first.
func (ts *tasks) ofRoom(roomID, kind string) []task {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	ts.pruneLocked()
	var out []task
	for _, t := range ts.byID {
		if t.roomID == roomID && t.kind == kind {
			out = append(out, *t)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// running returns a copy of the oldest task under way.
func (ts *tasks) running() (task, bool) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	var found *task
	for _, t := range ts.byID {
		if t.status == taskActive && (found == nil || t.started.Before(found.started)) {
			found = t
		}
	}
	if found == nil {
		return task{}, false
	}
	out := *found
	out.failedRedactions = nil
	return out, true
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
