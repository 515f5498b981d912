package config

import (
	"errors"
	"fmt"
	"strings"
)

// ParseBool reads a yes/no setting the way both the file and the
// environment spell it: true/false, 1/0, yes/no, enabled/disabled, in any
// case (and YAML 1.1's y/n and on/off, which files could always use).
func ParseBool(s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes", "y", "on", "enabled":
		return true, nil
	case "false", "0", "no", "n", "off", "disabled":
		return false, nil
	}
	return false, fmt.Errorf("%q is not a yes/no value (true/false, 1/0, yes/no, enabled/disabled)", s)
}

// applyEnv lets the MATRIX_* variables win over the file. An empty variable
// leaves the file's value alone.
func (c *Config) applyEnv(getenv Getenv) error {
	set := func(dst *string, name string) {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	var errs []error
	setBool := func(dst *bool, name string) {
		v := getenv(name)
		if v == "" {
			return
		}
		b, err := ParseBool(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			return
		}
		*dst = b
	}
	set(&c.Server.Name, EnvServerName)
	set(&c.Server.Listen, EnvListen)
	set(&c.Server.PublicBaseURL, EnvPublicBaseURL)
	set(&c.Registration.Mode, EnvRegistration)
	set(&c.Registration.SharedSecret, EnvRegistrationSharedSecret)
	set(&c.Logging.Level, EnvLogLevel)
	setBool(&c.Federation.Enabled, EnvFederation)
	set(&c.Federation.Listen, EnvFederationListen)
	set(&c.Federation.TLSCert, EnvTLSCert)
	set(&c.Federation.TLSKey, EnvTLSKey)
	set(&c.Federation.ExtraCAFile, EnvFederationCA)
	setBool(&c.Federation.AllowPrivateAddresses, EnvFederationAllowPrivate)
	if err := c.Database.applyEnv(getenv); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
