package auth

import (
	"net/http"
	"strings"

	"github.com/gorilla/mux"
	"github.com/sirupsen/logrus"

	"matrixhs/internal/accounts"
)

// SetAuditLog sets where requests to admin endpoints are recorded: who
// (the admin, or the refused user), what (the method and route, with the
// path as sent) and the answer's status.
func (a *Auth) SetAuditLog(log logrus.FieldLogger) { a.audit.Store(&log) }

func (a *Auth) auditRequest(r *http.Request, s *accounts.Session, status int) {
	log := a.audit.Load()
	if log == nil {
		return
	}
	action := r.Method + " " + r.URL.Path
	if route := mux.CurrentRoute(r); route != nil {
		if tpl, err := route.GetPathTemplate(); err == nil {
			action = r.Method + " " + tpl
		}
	}
	fields := logrus.Fields{"audit": "admin", "action": action, "path": r.URL.Path, "status": status}
	if s == nil {
		return // Require answered it: no credentials to name
	}
	if !s.IsAdmin {
		fields["user_id"] = s.UserID
		(*log).WithFields(fields).Warn("Admin API request refused")
		return
	}
	fields["admin"], fields["device_id"] = s.UserID, s.DeviceID
	(*log).WithFields(fields).Info("Admin API request")
}

// statusRecorder remembers the status a handler answered.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// isLogout reports whether a path is /logout or /logout/all of the client
// API (any version), which a locked account may still use.
func isLogout(path string) bool {
	return strings.HasPrefix(path, "/_matrix/client/") &&
		(strings.HasSuffix(path, "/logout") || strings.HasSuffix(path, "/logout/all"))
}
