package server

import (
	"context"

	"github.com/sirupsen/logrus"

	"matrixhs/appservice"
)

// setupAppServices reads the registration files of app_service_config_files
// (a bad one stops the server, naming the file and the problem), creates
// the appservices' sender users and makes their as_tokens valid.
func (s *Server) setupAppServices(ctx context.Context, opts appservice.Options) error {
	regs, err := appservice.Load(s.Config.AppServiceConfigFiles, s.Config.Server.Name)
	if err != nil {
		return err
	}
	opts.ServerName = s.Config.Server.Name
	s.AppServices = appservice.New(s.DB, s.Accounts, regs, s.Log, opts)
	if err := s.AppServices.Prepare(ctx); err != nil {
		return err
	}
	for _, r := range regs {
		s.Log.WithFields(logrus.Fields{"appservice": r.ID, "file": r.File, "url": r.PushURL(), "sender": r.SenderID}).Info("appservice registered")
	}
	s.Auth.SetAppServices(s.AppServices)
	return nil
}
