package server

import (
	"github.com/matrix-org/gomatrixserverlib/spec"
	"github.com/sirupsen/logrus"

	"matrixhs/config"
	"matrixhs/federationapi"
	"matrixhs/federationapi/keyring"
)

// federationOptions are the federation options of the config's federation
// section; what the caller set in given (tests) wins.
func federationOptions(cfg *config.Config, key *config.SigningKey, log logrus.FieldLogger, given federationapi.Options) (federationapi.Options, error) {
	fc := cfg.Federation
	o := given
	o.ServerName, o.SigningKey, o.Log = spec.ServerName(cfg.Server.Name), key, log
	o.Disabled = o.Disabled || !fc.Enabled
	if o.KeyValidity == 0 {
		o.KeyValidity = fc.KeyValidityPeriod
	}
	if o.Notaries == nil {
		for _, name := range fc.KeyNotaries {
			// Their keys are fetched from them and trusted on their TLS
			// certificate (the config names servers, not keys).
			o.Notaries = append(o.Notaries, keyring.Notary{ServerName: spec.ServerName(name)})
		}
	}
	if o.Listen == "" && fc.Listen != "" {
		o.Listen = fc.Listen
	}
	if o.Certificate == nil && fc.TLSCert != "" {
		cert, err := fc.Certificate()
		if err != nil {
			return o, err
		}
		o.Certificate = cert
	}
	if o.Client.RootCAs == nil && fc.ExtraCAFile != "" {
		pool, err := fc.RootCAs()
		if err != nil {
			return o, err
		}
		o.Client.RootCAs = pool
	}
	o.Client.AllowPrivate = o.Client.AllowPrivate || fc.AllowPrivateAddresses
	if o.InboundRate.PerSecond <= 0 {
		o.InboundRate = fc.InboundRateLimit
	}
	return o, nil
}
