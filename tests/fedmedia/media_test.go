// Package fedmedia tests media across servers: a client of one server
// downloading and thumbnailing another server's media (fetched over the
// federation media endpoints, or the deprecated client ones for servers
// without them), and the federation media endpoints this server serves.
package fedmedia

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"matrixhs/federationapi"
	"matrixhs/internal/accounts"
	"matrixhs/internal/httputil"
	"matrixhs/tests/fedtest"
)

type user struct {
	hs    *fedtest.Server
	token string
}

func newUser(t *testing.T, hs *fedtest.Server, localpart string) *user {
	t.Helper()
	login, err := hs.Accounts.Register(context.Background(), accounts.Registration{Localpart: localpart, Password: "correct horse battery staple"})
	if err != nil {
		t.Fatal(err)
	}
	return &user{hs: hs, token: login.AccessToken}
}

// do sends a client request and returns the answer (body read).
func (u *user) do(t *testing.T, method, path, contentType string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, u.hs.URL()+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if u.token != "" {
		req.Header.Set("Authorization", "Bearer "+u.token)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp, raw
}

// upload stores content on the user's server and returns its media ID.
func (u *user) upload(t *testing.T, content []byte, contentType, filename string) string {
	t.Helper()
	resp, raw := u.do(t, "POST", "/_matrix/media/v3/upload?filename="+url.QueryEscape(filename), contentType, content)
	var out struct {
		ContentURI string `json:"content_uri"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(raw, &out) != nil {
		t.Fatalf("upload: %d %s", resp.StatusCode, raw)
	}
	return out.ContentURI[strings.LastIndex(out.ContentURI, "/")+1:]
}

func pngImage(t *testing.T, w, h int) []byte {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for x := 0; x < w; x++ {
		for y := 0; y < h; y++ {
			img.Set(x, y, color.RGBA{uint8(x), uint8(y), 200, 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func errcode(raw []byte) string {
	var e struct {
		Errcode string `json:"errcode"`
	}
	json.Unmarshal(raw, &e)
	return e.Errcode
}

// TestRemoteMediaDownloadAndThumbnail: bob (hs2) downloads and thumbnails
// alice's upload on hs1 through the authenticated client endpoints: hs2
// fetches it over federation (multipart /media/download) and keeps a copy,
// which it serves after hs1 is gone; unknown remote media is 404, and
// allow_remote=false leaves remote media alone.
func TestRemoteMediaDownloadAndThumbnail(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice, bob := newUser(t, hs1, "alice"), newUser(t, hs2, "bob")
	img := pngImage(t, 300, 200)
	id := alice.upload(t, img, "image/png", "shot €.png")

	resp, body := bob.do(t, "GET", "/_matrix/client/v1/media/download/hs1/"+id, "", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, img) || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("remote download: %d %s (%d bytes)", resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
	}
	if _, params, _ := mime.ParseMediaType(resp.Header.Get("Content-Disposition")); params["filename"] != "shot €.png" {
		t.Fatalf("remote download's disposition: %q", resp.Header.Get("Content-Disposition"))
	}
	resp, body = bob.do(t, "GET", "/_matrix/client/v1/media/thumbnail/hs1/"+id+"?width=32&height=32&method=scale", "", nil)
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") {
		t.Fatalf("remote thumbnail: %d %s %.200s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	if cfg, _, err := image.DecodeConfig(bytes.NewReader(body)); err != nil || cfg.Width > 64 {
		t.Fatalf("remote thumbnail is not a small image: %+v, %v", cfg, err)
	}

	resp, body = bob.do(t, "GET", "/_matrix/client/v1/media/download/hs1/nosuchmedia", "", nil)
	if resp.StatusCode != 404 || errcode(body) != "M_NOT_FOUND" {
		t.Fatalf("unknown remote media: %d %s", resp.StatusCode, body)
	}
	other := alice.upload(t, []byte("not asked for yet"), "text/plain", "a.txt")
	resp, body = bob.do(t, "GET", "/_matrix/media/v3/download/hs1/"+other+"?allow_remote=false", "", nil)
	if resp.StatusCode != 404 {
		t.Fatalf("allow_remote=false: %d %s", resp.StatusCode, body)
	}

	hs1.Stop()
	resp, body = bob.do(t, "GET", "/_matrix/client/v1/media/download/hs1/"+id, "", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, img) {
		t.Fatalf("cached remote download with hs1 gone: %d (%d bytes)", resp.StatusCode, len(body))
	}
}

// TestFederationMediaEndpoints: what hs1 serves other servers: the
// content and a thumbnail of local media as multipart/mixed (metadata
// first), only to requests signed by a server; unknown media is 404.
func TestFederationMediaEndpoints(t *testing.T) {
	n := fedtest.NewNetwork(t)
	hs1, hs2 := n.Start("hs1"), n.Start("hs2")
	alice := newUser(t, hs1, "alice")
	img := pngImage(t, 120, 80)
	id := alice.upload(t, img, "image/png", "pic.png")

	parts := func(path string) (int, []multipartPart) {
		t.Helper()
		resp, err := hs2.Federation.Client.HTTPClient().Do(hs2.SignedRequest(t, "GET", "hs1", path, nil))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return resp.StatusCode, nil
		}
		return 200, readParts(t, resp)
	}
	status, p := parts("/_matrix/federation/v1/media/download/" + id)
	if status != 200 || len(p) != 2 || p[0].contentType != "application/json" || string(p[0].body) != "{}" ||
		p[1].contentType != "image/png" || !bytes.Equal(p[1].body, img) || !strings.Contains(p[1].disposition, "pic.png") {
		t.Fatalf("federation download: %d %+v", status, p)
	}
	status, p = parts("/_matrix/federation/v1/media/thumbnail/" + id + "?width=32&height=32&method=crop")
	if status != 200 || len(p) != 2 || !strings.HasPrefix(p[1].contentType, "image/") {
		t.Fatalf("federation thumbnail: %d %+v", status, p)
	}
	if status, _ := parts("/_matrix/federation/v1/media/download/nosuchmedia"); status != 404 {
		t.Fatalf("unknown media: %d", status)
	}
	// Not signed: 401.
	resp, err := http.Get(hs1.URL() + "/_matrix/federation/v1/media/download/" + id)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("unsigned federation download: %d", resp.StatusCode)
	}
}

// TestRemoteMediaFromServerWithoutFederationMedia: a server that does not
// serve the federation media endpoints (404 M_UNRECOGNIZED, or a 404 that
// is not JSON, as servers from before authenticated media answer) is asked
// through the deprecated /_matrix/media/v3/download; one that refuses the
// request otherwise (400 without M_UNRECOGNIZED) is not, as Synapse judges,
// unless the client asked on the deprecated path itself.
func TestRemoteMediaFromServerWithoutFederationMedia(t *testing.T) {
	n := fedtest.NewNetwork(t)
	old := []byte("from an older server")
	n.Start("hs1", olderServer(old, func(w http.ResponseWriter, r *http.Request) {
		httputil.WriteError(w, r, httputil.Unrecognized("Unrecognized request"))
	}))
	n.Start("hs3", olderServer(old, http.NotFound))
	n.Start("hs4", olderServer(old, func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "bad request", http.StatusBadRequest)
	}))
	hs2 := n.Start("hs2")
	bob := newUser(t, hs2, "bob")
	for _, server := range []string{"hs1", "hs3"} {
		resp, body := bob.do(t, "GET", "/_matrix/client/v1/media/download/"+server+"/oldmedia", "", nil)
		if resp.StatusCode != 200 || !bytes.Equal(body, old) || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
			t.Fatalf("download from an older %s: %d %s %q", server, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	resp, body := bob.do(t, "GET", "/_matrix/client/v1/media/download/hs4/oldmedia", "", nil)
	if resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("download from a server that refused: %d %s", resp.StatusCode, body)
	}
	// A download on the deprecated unauthenticated path asks the other
	// server's deprecated path first, as Synapse does (Complement's
	// federation server refuses its federation endpoint so).
	anon := &user{hs: hs2}
	resp, body = anon.do(t, "GET", "/_matrix/media/v3/download/hs4/oldmedia", "", nil)
	if resp.StatusCode != 200 || !bytes.Equal(body, old) {
		t.Fatalf("deprecated download from hs4: %d %q", resp.StatusCode, body)
	}
}

// olderServer is a server whose federation media download answers with
// refuse, and which serves content at the deprecated download endpoint.
func olderServer(content []byte, refuse http.HandlerFunc) fedtest.Option {
	return fedtest.WithFederation(func(o *federationapi.Options) {
		o.ExtraRoutes = func(rt *httputil.Router, _ *federationapi.API) {
			rt.Exact("GET", "/_matrix/federation/v1/media/download/{mediaId}", refuse)
			rt.Exact("GET", "/_matrix/media/v3/download/{serverName}/{mediaId}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Get("allow_remote") != "false" || httputil.PathVar(r, "mediaId") != "oldmedia" {
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Disposition", `attachment; filename="old.txt"`)
				w.Write(content)
			}))
		}
	})
}

type multipartPart struct {
	contentType, disposition string
	body                     []byte
}

func readParts(t *testing.T, resp *http.Response) []multipartPart {
	t.Helper()
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" {
		t.Fatalf("answer of type %q", resp.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(resp.Body, params["boundary"])
	var out []multipartPart
	for {
		p, err := mr.NextPart()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(p)
		out = append(out, multipartPart{contentType: p.Header.Get("Content-Type"), disposition: p.Header.Get("Content-Disposition"), body: body})
	}
}
