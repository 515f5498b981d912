package admin

import (
	"testing"
	"time"
)

func TestTasksOnePerRoomAndKeptADay(t *testing.T) {
	now := time.Unix(1000, 0)
	ts := newTasks(func() time.Time { return now })
	del, ok := ts.start("!r:hs", taskDeleteRoom)
	if !ok {
		t.Fatal("first task refused")
	}
	if _, ok := ts.start("!r:hs", taskPurgeHistory); ok {
		t.Fatal("a history purge started during the room's deletion")
	}
	if _, ok := ts.start("!other:hs", taskPurgeHistory); !ok {
		t.Fatal("another room's purge refused")
	}
	ts.update(del, func(t *task) { t.status = taskComplete })
	if _, ok := ts.start("!r:hs", taskDeleteRoom); !ok {
		t.Fatal("a new deletion refused after the first finished")
	}
	now = now.Add(taskKeep + time.Minute)
	if _, ok := ts.get(del.id); ok {
		t.Fatal("a finished task outlived a day")
	}
}
