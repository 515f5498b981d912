package admin

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sort"
	"strconv"

	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/storage"
)

// Event reports (Synapse's admin API) and the background work status.

// eventReportJSON is an event report as the admin API shows it, with the
// room's name and canonical alias when the room is still known.
func (a *API) eventReportJSON(ctx context.Context, rep storage.Report, rooms map[string]storage.AdminRoom) map[string]any {
	rm, ok := rooms[rep.RoomID]
	if !ok {
		if list, err := a.db.AdminRooms(ctx, rep.RoomID); err == nil && len(list) == 1 {
			rm = list[0]
		}
		rooms[rep.RoomID] = rm
	}
	var score any
	if rep.Score != nil {
		score = *rep.Score
	}
	return map[string]any{"id": rep.ID, "received_ts": rep.TS, "room_id": rep.RoomID, "event_id": rep.EventID,
		"user_id": rep.Reporter, "sender": rep.UserID, "reason": nullIfEmpty(rep.Reason), "score": score,
		"name": nullIfEmpty(rm.Name), "canonical_alias": nullIfEmpty(rm.CanonicalAlias)}
}

// adminEventReports serves GET /_synapse/admin/v1/event_reports.
func (a *API) adminEventReports(r *http.Request, _ *accounts.Session) (any, error) {
	q := r.URL.Query()
	from, limit, err := httputil.OffsetLimit(q, 100)
	if err != nil {
		return nil, err
	}
	dir := q.Get("dir")
	if dir != "" && dir != "b" && dir != "f" {
		return nil, httputil.InvalidParam("dir must be f or b")
	}
	all, err := a.db.ReportsOfKind(r.Context(), storage.ReportEvent)
	if err != nil {
		return nil, err
	}
	var match []storage.Report
	for _, rep := range all {
		if (q.Get("user_id") == "" || rep.Reporter == q.Get("user_id")) && (q.Get("room_id") == "" || rep.RoomID == q.Get("room_id")) &&
			(q.Get("event_sender_user_id") == "" || rep.UserID == q.Get("event_sender_user_id")) {
			match = append(match, rep)
		}
	}
	if dir != "f" { // newest first by default
		sort.SliceStable(match, func(i, j int) bool { return match[i].ID > match[j].ID })
	}
	rooms := map[string]storage.AdminRoom{}
	page := []map[string]any{}
	for i := from; i < len(match) && i < from+limit; i++ {
		page = append(page, a.eventReportJSON(r.Context(), match[i], rooms))
	}
	out := map[string]any{"event_reports": page, "total": len(match)}
	if from+limit < len(match) {
		out["next_token"] = from + limit
	}
	return out, nil
}

// eventReportParam is the event report a path's {reportId} names.
func (a *API) eventReportParam(r *http.Request) (*storage.Report, error) {
	id, err := strconv.ParseInt(httputil.PathVar(r, "reportId"), 10, 64)
	if err != nil || id < 0 {
		return nil, httputil.InvalidParam("The report_id parameter must be a string representing a positive integer.")
	}
	rep, err := a.db.ReportByID(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) || (err == nil && rep.Kind != storage.ReportEvent) {
		return nil, httputil.NotFound("Event report not found")
	}
	return rep, err
}

// adminEventReport serves GET and DELETE /_synapse/admin/v1/event_reports/{reportId}.
func (a *API) adminEventReport(r *http.Request, _ *accounts.Session) (any, error) {
	rep, err := a.eventReportParam(r)
	if err != nil {
		return nil, err
	}
	ctx := r.Context()
	if r.Method == http.MethodDelete {
		err := a.db.Write(ctx, func(tx *storage.Tx) error { return tx.DeleteReport(ctx, rep.ID, storage.ReportEvent) })
		if errors.Is(err, storage.ErrNotFound) {
			return nil, httputil.NotFound("Event report not found")
		}
		if err != nil {
			return nil, err
		}
		return httputil.Empty, nil
	}
	out := a.eventReportJSON(ctx, *rep, map[string]storage.AdminRoom{})
	out["event_json"] = nil
	if ev, err := a.db.EventByID(ctx, rep.EventID); err == nil {
		out["event_json"] = json.RawMessage(ev.JSON)
	} else if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	return out, nil
}

// adminBackgroundStatus serves GET /_synapse/admin/v1/background_updates/status:
// this server's schema changes run at start-up, so the background work is
// the room deletions, history purges and redactions under way.
func (a *API) adminBackgroundStatus(*http.Request, *accounts.Session) (any, error) {
	updates := map[string]any{}
	if t, ok := a.tasks.running(); ok {
		ms := float64(a.accounts.Now().Sub(t.started).Milliseconds())
		var avg float64
		if ms > 0 {
			avg = float64(t.progress.Events) / ms
		}
		updates["main"] = map[string]any{"name": t.kind + " " + t.roomID, "total_item_count": t.progress.Events,
			"total_duration_ms": ms, "average_items_per_ms": avg}
	}
	return map[string]any{"enabled": true, "current_updates": updates}, nil
}

// adminBackgroundEnabled serves GET and POST /_synapse/admin/v1/background_updates/enabled:
// background work here cannot be paused, so it stays enabled.
func (a *API) adminBackgroundEnabled(r *http.Request, _ *accounts.Session) (any, error) {
	if r.Method == http.MethodPost {
		var req struct {
			Enabled *bool `json:"enabled"`
		}
		if err := httputil.DecodeJSON(r, &req); err != nil {
			return nil, err
		}
		if req.Enabled == nil {
			return nil, httputil.MissingParam("enabled is required")
		}
		if !*req.Enabled {
			return nil, httputil.InvalidParam("background work on this server cannot be paused")
		}
	}
	return map[string]any{"enabled": true}, nil
}

// adminBackgroundStartJob serves POST /_synapse/admin/v1/background_updates/start_job:
// Synapse's jobs rebuild tables this server keeps current as it goes.
func (a *API) adminBackgroundStartJob(r *http.Request, _ *accounts.Session) (any, error) {
	var req struct {
		JobName *string `json:"job_name"`
	}
	if err := httputil.DecodeJSON(r, &req); err != nil {
		return nil, err
	}
	if req.JobName == nil {
		return nil, httputil.MissingParam("job_name is required")
	}
	switch *req.JobName {
	case "populate_stats_process_rooms", "regenerate_directory":
		return nil, httputil.InvalidParam("%s is not needed here: room statistics and the user directory are kept current as they change", *req.JobName)
	}
	return nil, httputil.InvalidParam("Invalid job_name")
}
