package mediaapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"matrixhs/config"
	"matrixhs/internal/httputil"
)

// countingListener is a loopback listener that records connection attempts,
// to prove refused previews never open a connection.
func countingListener(t *testing.T) (string, *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln.Addr().String(), &n
}

func TestPreviewRefusesInternalAddresses(t *testing.T) {
	e := newTestEnv(t, func(c *config.Config) { c.Media.URLPreviewEnabled = true }, Options{})
	addr, hits := countingListener(t)
	_, port, _ := net.SplitHostPort(addr)
	for _, target := range []string{
		"http://" + addr + "/", "http://localhost:" + port + "/", "http://[::1]:" + port + "/",
		"http://10.0.0.1/", "http://192.168.0.1/", "http://169.254.169.254/latest/meta-data/",
		"http://100.64.0.1/", "http://[fd00::1]/", "http://[::ffff:127.0.0.1]:" + port + "/", "http://0.0.0.0:" + port + "/",
	} {
		u, err := previewURL(target)
		if err != nil {
			t.Fatalf("%s: %v", target, err)
		}
		_, err = e.m.previews.get(context.Background(), u)
		var he *httputil.Error
		if !errors.As(err, &he) || (he.Status != http.StatusForbidden && he.Status != http.StatusBadGateway) {
			t.Fatalf("preview of %s: err = %v, want a refusal", target, err)
		}
		if strings.Contains(target, port) && he.Status != http.StatusForbidden {
			t.Fatalf("preview of %s: %v, want 403", target, err)
		}
	}
	if n := hits.Load(); n != 0 {
		t.Fatalf("refused previews opened %d connections", n)
	}
	for _, bad := range []string{"file:///etc/passwd", "gopher://x/", "//x/", "http://user:pw@example.org/", "ftp://x/"} {
		if _, err := previewURL(bad); err == nil {
			t.Fatalf("%s accepted", bad)
		}
	}
}

func TestPreviewParsesPages(t *testing.T) {
	var hits atomic.Int32
	png := makePNG(t, 64, 48)
	mux := http.NewServeMux()
	mux.HandleFunc("/page", func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<!doctype html><html><head><title>Fallback title</title>
			<meta property="og:title" content="  The   Title ">
			<meta property="og:description" content="A page &amp; more">
			<meta property="og:image" content="/img.png">
			<meta property="og:image:width" content="not a number">
			<meta name="og:site_name" content="Site">
			<meta property="og:title" content="second title ignored">
			</head><body><meta property="og:type" content="article"></body></html>`)
	})
	mux.HandleFunc("/img.png", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	})
	mux.HandleFunc("/plain", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=iso-8859-1")
		w.Write([]byte("<html><head><title>Caf\xe9</title><meta name=description content='Desc'></head></html>"))
	})
	mux.HandleFunc("/photo", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/png")
		w.Write(png)
	})
	mux.HandleFunc("/missing", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "no", 404) })
	mux.HandleFunc("/to-private", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://10.0.0.1/", http.StatusFound)
	})
	mux.HandleFunc("/to-other-loopback", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://127.0.0.2:"+strings.Split(r.Host, ":")[1]+"/page", http.StatusFound)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/page", http.StatusFound) })
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprint(w, "<html><head><meta property='og:title' content='Early'></head><body>")
		chunk := strings.Repeat("<p>filler</p>", 1000)
		for i := 0; i < 300; i++ { // ~4 MB, cut at 1 MiB
			if _, err := fmt.Fprint(w, chunk); err != nil {
				return
			}
		}
		fmt.Fprint(w, "<meta property='og:description' content='Late'></body></html>")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	e := newTestEnv(t, func(c *config.Config) {
		c.Media.URLPreviewEnabled = true
		c.Media.URLPreviewIPRangeWhitelist = []string{"127.0.0.1/32"}
	}, Options{})
	get := func(path string) (map[string]any, error) {
		u, err := url.Parse(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := e.m.previews.get(context.Background(), u)
		if err != nil {
			return nil, err
		}
		var og map[string]any
		if err := json.Unmarshal(raw, &og); err != nil {
			t.Fatalf("preview JSON: %v: %s", err, raw)
		}
		return og, nil
	}

	og, err := get("/page")
	if err != nil {
		t.Fatal(err)
	}
	if og["og:title"] != "The Title" || og["og:description"] != "A page & more" || og["og:site_name"] != "Site" || og["og:type"] != "article" {
		t.Fatalf("og = %v", og)
	}
	img, _ := og["og:image"].(string)
	if !strings.HasPrefix(img, "mxc://media.test/") || og["og:image:type"] != "image/png" ||
		og["og:image:width"] != float64(64) || og["og:image:height"] != float64(48) || og["matrix:image:size"] != float64(len(png)) {
		t.Fatalf("og:image fields = %v", og)
	}
	// The image is local media now.
	if med, err := e.db.Media(context.Background(), "media.test", strings.TrimPrefix(img, "mxc://media.test/")); err != nil || med.Size != int64(len(png)) {
		t.Fatalf("preview image media = %+v, %v", med, err)
	}
	// Cached: a second request does not fetch again.
	if _, err := get("/page#fragment"); err != nil || hits.Load() != 1 {
		t.Fatalf("second preview fetched again (hits %d, err %v)", hits.Load(), err)
	}

	og, err = get("/plain")
	if err != nil || og["og:title"] != "Café" || og["og:description"] != "Desc" {
		t.Fatalf("latin-1 page = %v, %v", og, err)
	}
	og, err = get("/photo")
	if err != nil || !strings.HasPrefix(og["og:image"].(string), "mxc://") {
		t.Fatalf("image URL preview = %v, %v", og, err)
	}
	og, err = get("/huge")
	if err != nil || og["og:title"] != "Early" || og["og:description"] != nil {
		t.Fatalf("huge page = %v, %v (must stop reading at 1 MiB)", og, err)
	}
	if og, err = get("/hop"); err != nil || og["og:title"] != "The Title" {
		t.Fatalf("redirected preview = %v, %v", og, err)
	}

	wantStatus := func(path string, status int) {
		t.Helper()
		_, err := get(path)
		var he *httputil.Error
		if !errors.As(err, &he) || he.Status != status {
			t.Fatalf("%s: err = %v, want status %d", path, err, status)
		}
	}
	wantStatus("/missing", http.StatusBadGateway)
	wantStatus("/to-private", http.StatusForbidden)
	wantStatus("/to-other-loopback", http.StatusForbidden)
	wantStatus("/loop", http.StatusBadGateway)
}

func TestPreviewDisabledByDefault(t *testing.T) {
	e := newTestEnv(t, nil, Options{})
	for _, p := range []string{"/_matrix/client/v1/media/preview_url?url=https://example.org", "/_matrix/media/v3/preview_url?url=https://example.org"} {
		resp, raw := e.do(t, "GET", p, e.token, "", nil)
		if resp.StatusCode != 404 || !strings.Contains(string(raw), "M_UNRECOGNIZED") {
			t.Fatalf("%s with previews off = %d %s", p, resp.StatusCode, raw)
		}
	}
}
