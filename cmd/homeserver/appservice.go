package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"matrixhs/appservice"
	"matrixhs/config"
	"matrixhs/storage"
)

const appServiceKey = "app_service_config_files"

func cmdAppService(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("want a subcommand: list, or add FILE")
	}
	cfg, cfgPath, err := config.Load(os.Getenv)
	if err != nil {
		return err
	}
	switch args[0] {
	case "list":
		if len(args) != 1 {
			return errors.New("list takes no arguments")
		}
		return listAppServices(ctx, cfg, stdout)
	case "add":
		if len(args) != 2 {
			return errors.New("want: appservice add FILE")
		}
		return addAppService(cfg, cfgPath, args[1], stdout)
	default:
		return fmt.Errorf("unknown subcommand %q: want list or add", args[0])
	}
}

// listAppServices prints the registered appservices and how delivery to
// each stands.
func listAppServices(ctx context.Context, cfg *config.Config, stdout io.Writer) error {
	regs, err := appservice.Load(cfg.AppServiceConfigFiles, cfg.Server.Name)
	if err != nil {
		return err
	}
	db, err := storage.Open(ctx, cfg.Database.Path)
	if err != nil {
		return err
	}
	defer db.Close()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tURL\tSENDER\tLAST TXN\tIN FLIGHT\tFAILURES\tLAST SUCCESS\tLAST ERROR\tFILE")
	for _, r := range regs {
		st, err := db.AppServiceState(ctx, r.ID)
		if err != nil && !errors.Is(err, storage.ErrNotFound) {
			return err
		}
		inFlight, success := "-", "-"
		if st.TxnBody != nil {
			inFlight = fmt.Sprintf("%d events", st.TxnEvents)
		}
		if st.LastSuccessTS > 0 {
			success = time.UnixMilli(st.LastSuccessTS).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\n", r.ID, r.PushURL(), r.SenderID, st.LastTxn, inFlight,
			st.Failures, success, st.LastError, r.File)
	}
	return tw.Flush()
}

// addAppService checks a registration file together with the registered
// ones, copies it into <data>/appservices/ and lists it in the config
// file. The server reads it at its next start.
func addAppService(cfg *config.Config, cfgPath, file string, stdout io.Writer) error {
	reg, err := appservice.LoadFile(file, cfg.Server.Name)
	if err != nil {
		return err
	}
	dest := filepath.Join(cfg.Server.DataDir, "appservices", reg.ID+".yaml")
	paths := append(append([]string{}, cfg.AppServiceConfigFiles...), file)
	if _, err := appservice.Load(paths, cfg.Server.Name); err != nil {
		return err
	}
	for _, p := range cfg.AppServiceConfigFiles {
		if p == dest {
			return fmt.Errorf("%s is already registered", dest)
		}
	}
	raw, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dest), 0o700); err != nil {
		return err
	}
	if _, err := os.Stat(dest); err == nil {
		return fmt.Errorf("%s exists already", dest)
	}
	if err := os.WriteFile(dest, raw, 0o600); err != nil {
		return err
	}
	rel, err := filepath.Rel(cfg.Server.DataDir, dest)
	if err != nil {
		rel = dest
	}
	if err := appendConfigList(cfgPath, appServiceKey, rel); err != nil {
		os.Remove(dest)
		return err
	}
	fmt.Fprintf(stdout, "appservice %s registered (%s, listed in %s); restart the server to load it\n", reg.ID, dest, cfgPath)
	return nil
}

// appendConfigList adds value to a top-level list of the config file,
// keeping the rest of the file (comments included).
func appendConfigList(path, key, value string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return fmt.Errorf("config %s: %w", path, err)
	}
	if doc.Kind == 0 {
		doc = yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{{Kind: yaml.MappingNode}}}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("config %s: not a mapping", path)
	}
	item := &yaml.Node{Kind: yaml.ScalarNode, Value: value}
	found := false
	for i := 0; i+1 < len(root.Content); i += 2 {
		if root.Content[i].Value != key {
			continue
		}
		list := root.Content[i+1]
		if list.Kind == yaml.ScalarNode && list.Tag == "!!null" {
			*list = yaml.Node{Kind: yaml.SequenceNode}
		}
		if list.Kind != yaml.SequenceNode {
			return fmt.Errorf("config %s: %s is not a list", path, key)
		}
		list.Style = 0
		list.Content = append(list.Content, item)
		found = true
	}
	if !found {
		root.Content = append(root.Content, &yaml.Node{Kind: yaml.ScalarNode, Value: key},
			&yaml.Node{Kind: yaml.SequenceNode, Content: []*yaml.Node{item}})
	}
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return err
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, buf.Bytes(), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
