// Package startsh_test tests start.sh, the entry point of the Ratio1 Worker App: building the
// binary into the data dir, reusing it, supervising the server and fetching the pinned Go
// toolchain when there is no go on PATH.
package startsh_test

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestStartScript is the developer/CI path (go on PATH): build, serve, restart after a crash,
// stop on SIGTERM, reuse the binary on the next start, and fall back to it when a build fails.
func TestStartScript(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Fatalf("go is not on PATH: %v", err)
	}
	root := repoRoot(t)
	tmp := tempDir(t)
	repo := filepath.Join(tmp, "repo")
	data := filepath.Join(tmp, "data")
	copyRepo(t, root, repo)

	// 1. First start: builds and serves.
	addr := freeAddr(t)
	env := cleanEnv("MATRIX_DATA_DIR="+data, "MATRIX_LISTEN="+addr, "MATRIX_SERVER_NAME=localhost", "START_NO_APT=1")
	p := startScript(t, "first", repo, env)
	took := p.waitVersions(t, addr, 8*time.Minute)
	t.Logf("first start: build + serve took %s", took.Round(time.Millisecond))
	if !strings.Contains(p.out.String(), "start.sh: using go on PATH") {
		t.Errorf("start.sh did not use the go on PATH")
	}
	matches, _ := filepath.Glob(filepath.Join(data, "bin", "homeserver-*"))
	if len(matches) != 1 {
		t.Fatalf("want one binary in %s/bin, got %v", data, matches)
	}
	if target, err := os.Readlink(filepath.Join(data, "bin", "current")); err != nil || target != filepath.Base(matches[0]) {
		t.Errorf("bin/current -> %q (%v), want %q", target, err, filepath.Base(matches[0]))
	}

	// 2. kill -9 the server: the supervisor starts a new one.
	pid1 := p.serverPID(t, data, 0, 10*time.Second)
	if err := syscall.Kill(pid1, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	pid2 := p.serverPID(t, data, pid1, 30*time.Second)
	p.waitVersions(t, addr, 30*time.Second)
	t.Logf("server restarted (pid %d -> %d) and answering after %s", pid1, pid2, time.Since(t0).Round(time.Millisecond))
	waitGone(t, pid1, 5*time.Second)
	if !regexp.MustCompile(`start\.sh: server exited with status 137 after \d+s; restarting in 1s`).MatchString(p.out.String()) {
		t.Errorf("no restart log line for the killed server")
	}

	// 3. SIGTERM to start.sh: forwarded, start.sh exits 0, the server is gone.
	code, d := p.stop(t, syscall.SIGTERM, 30*time.Second)
	t.Logf("SIGTERM -> start.sh exited %d after %s", code, d.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("start.sh exit code %d after SIGTERM, want 0", code)
	}
	waitGone(t, pid2, 5*time.Second)
	if _, err := os.Stat(filepath.Join(data, "homeserver.pid")); !os.IsNotExist(err) {
		t.Errorf("homeserver.pid still there after stop (%v)", err)
	}
	if out := p.out.String(); !strings.Contains(out, "received SIGTERM") {
		t.Errorf("start.sh did not log the SIGTERM")
	} else if strings.Contains(out[strings.Index(out, "received SIGTERM"):], "starting ") {
		t.Errorf("start.sh restarted the server after SIGTERM")
	}

	// 4. Second start on the same data dir: reuses the binary, no build, up within seconds.
	addr = freeAddr(t)
	env = cleanEnv("MATRIX_DATA_DIR="+data, "MATRIX_LISTEN="+addr, "MATRIX_SERVER_NAME=localhost", "START_NO_APT=1")
	p2 := startScript(t, "second", repo, env)
	took = p2.waitVersions(t, addr, 60*time.Second)
	t.Logf("second start (reuse) answered after %s", took.Round(time.Millisecond))
	out := p2.out.String()
	if !strings.Contains(out, "start.sh: reusing binary") {
		t.Errorf("second start did not log 'reusing binary'")
	}
	if strings.Contains(out, "building") || strings.Contains(out, "using go on PATH") {
		t.Errorf("second start invoked the build")
	}
	if took > 20*time.Second {
		t.Errorf("second start took %s; a reused binary must be up within seconds", took)
	}
	if code, _ := p2.stop(t, syscall.SIGINT, 30*time.Second); code != 0 {
		t.Errorf("start.sh exit code %d after SIGINT, want 0", code)
	}

	// 5. A commit that does not build: the old binary keeps running, loudly.
	writeFile(t, filepath.Join(repo, "cmd", "homeserver", "zz_startsh_broken.go"), "package main\n\nfunc broken( {\n", 0o644)
	addr = freeAddr(t)
	env = cleanEnv("MATRIX_DATA_DIR="+data, "MATRIX_LISTEN="+addr, "MATRIX_SERVER_NAME=localhost", "START_NO_APT=1")
	p3 := startScript(t, "broken", repo, env)
	p3.waitVersions(t, addr, 5*time.Minute)
	out = p3.out.String()
	if !strings.Contains(out, "BUILD FAILED") || !strings.Contains(out, "running the OLD binary") {
		t.Errorf("a failed build did not log the fallback to the old binary")
	}
	if target, err := os.Readlink(filepath.Join(data, "bin", "current")); err != nil || target != filepath.Base(matches[0]) {
		t.Errorf("after a failed build bin/current -> %q (%v), want the old %q", target, err, filepath.Base(matches[0]))
	}
	noMatches(t, filepath.Join(data, "bin", ".homeserver-*"))
	if code, _ := p3.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("start.sh exit code %d after SIGTERM, want 0", code)
	}
}

// fakeServer is a stand-in binary: it records its starts, crashes the first `crashes` times,
// then runs until SIGTERM.
const fakeServer = `#!/bin/bash
log="$MATRIX_DATA_DIR/fake.log"
echo "start pid=$$ pwd=$PWD args=$* data=$MATRIX_DATA_DIR" >>"$log"
n=$(grep -c '^start' "$log")
if [ "$n" -le %d ]; then exit 3; fi
trap 'echo term >>"$log"; exit 0' TERM
echo up >>"$log"
while :; do sleep 0.05; done
`

// fakeID runs start.sh where nothing can build (no go, GOPROXY=off) to learn the commit ID it
// computes; it also checks that this fails fast with a clear message.
func fakeID(t *testing.T, repo, data, tools string) string {
	t.Helper()
	p := startScript(t, "no-go", repo, cleanEnv("PATH="+tools, "MATRIX_DATA_DIR="+data, "GOPROXY=off", "START_NO_APT=1"))
	if code := p.waitExit(t, 60*time.Second); code == 0 {
		t.Fatalf("start.sh without go and without a proxy exited 0")
	}
	out := p.out.String()
	for _, want := range []string{"could not fetch the Go toolchain", "no earlier binary"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	m := regexp.MustCompile(`start\.sh: commit (src-[0-9a-f]{40})\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no commit line in the output")
	}
	return m[1]
}

// TestSupervisorBackoff checks the restart backoff, signal handling during the backoff sleep,
// the default data dir and the environment the server gets, with a fake binary.
func TestSupervisorBackoff(t *testing.T) {
	root := repoRoot(t)
	tmp := tempDir(t)
	repo := filepath.Join(tmp, "repo")
	writeFakeRepo(t, root, repo)
	tools := toolsPath(t, append(baseTools, "unzip")...)

	// Default data dir: ./data relative to the working dir, unless /data exists and is writable.
	data := filepath.Join(repo, "data")
	var dataEnv []string
	if fi, err := os.Stat("/data"); err == nil && fi.IsDir() {
		dataEnv = []string{"MATRIX_DATA_DIR=" + data}
		t.Logf("/data exists on this machine: not testing the ./data default")
	}
	id := fakeID(t, repo, filepath.Join(tmp, "scratch"), tools)
	t.Logf("commit ID of the fake repo: %s", id)
	writeFile(t, filepath.Join(data, "bin", "homeserver-"+id), fmt.Sprintf(fakeServer, 3), 0o755)

	env := cleanEnv(append(dataEnv, "PATH="+tools, "GOPROXY=off", "START_NO_APT=1")...)
	p := startScript(t, "backoff", repo, env)
	p.waitOutput(t, regexp.MustCompile(`start\.sh: reusing binary`), 10*time.Second)
	for _, d := range []string{"1", "2", "4"} {
		p.waitOutput(t, regexp.MustCompile(`server exited with status 3 after \d+s; restarting in `+d+`s`), 20*time.Second)
	}
	pid := p.serverPID(t, data, 0, 20*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(data, "fake.log"))
		if strings.Contains(string(b), "up\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fake server never came up: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, d := p.stop(t, syscall.SIGTERM, 20*time.Second)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	t.Logf("SIGTERM -> exit %d after %s", code, d.Round(time.Millisecond))
	waitGone(t, pid, 5*time.Second)
	b, _ := os.ReadFile(filepath.Join(data, "fake.log"))
	log := string(b)
	if !strings.HasSuffix(log, "term\n") {
		t.Errorf("the server did not get SIGTERM: %s", log)
	}
	wantStart := fmt.Sprintf("pwd=%s args=serve data=%s\n", repo, data)
	if c := strings.Count(log, wantStart); c != 4 {
		t.Errorf("want 4 starts with %q, log:\n%s", wantStart, log)
	}

	// SIGINT while start.sh sleeps before a restart: it stops at once and exits 0.
	if err := os.Remove(filepath.Join(data, "fake.log")); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(data, "bin", "homeserver-"+id), fmt.Sprintf(fakeServer, 1000), 0o755)
	p = startScript(t, "backoff-sigint", repo, env)
	p.waitOutput(t, regexp.MustCompile(`restarting in 4s`), 20*time.Second)
	code, d = p.stop(t, syscall.SIGINT, 20*time.Second)
	if code != 0 || d > 2*time.Second {
		t.Errorf("SIGINT during the backoff sleep: exit %d after %s, want 0 at once", code, d)
	}
	if strings.Contains(p.out.String(), "restarting in 8s") {
		t.Errorf("start.sh restarted the server after SIGINT")
	}

	// A server that ignores SIGTERM is killed after START_STOP_TIMEOUT.
	writeFile(t, filepath.Join(data, "bin", "homeserver-"+id),
		"#!/bin/bash\ntrap '' TERM\necho stubborn >\"$MATRIX_DATA_DIR/stubborn\"\nwhile :; do sleep 0.05; done\n", 0o755)
	p = startScript(t, "stubborn", repo, append(env, "START_STOP_TIMEOUT=1"))
	pid = p.serverPID(t, data, 0, 20*time.Second)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(filepath.Join(data, "stubborn")); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stubborn server did not start")
		}
	}
	code, d = p.stop(t, syscall.SIGTERM, 20*time.Second)
	if code != 0 || !strings.Contains(p.out.String(), "sending SIGKILL") {
		t.Errorf("stubborn server: exit %d after %s, want 0 after a SIGKILL", code, d)
	}
	waitGone(t, pid, 5*time.Second)
}

// writeFakeToolchainProxy creates a module proxy dir whose toolchain zip is well-formed but not
// the pinned one.
func writeFakeToolchainProxy(t *testing.T, dir, version string) {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	h := &zip.FileHeader{Name: "golang.org/toolchain@" + version + "/bin/go", Method: zip.Deflate}
	h.SetMode(0o755)
	w, err := zw.CreateHeader(h)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "#!/bin/sh\necho 'go version go1.26.8 linux/amd64'\n")
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "golang.org", "toolchain", "@v", version+".zip"), buf.String(), 0o644)
}

// TestToolchainChecksumMismatch: a toolchain zip that does not match the committed sha256 is
// rejected with a clear message and nothing is extracted.
func TestToolchainChecksumMismatch(t *testing.T) {
	needToolchainPlatform(t)
	root := repoRoot(t)
	_, version, sha, _ := toolchainPin(t, root)
	tmp := tempDir(t)
	repo := filepath.Join(tmp, "repo")
	data := filepath.Join(tmp, "data")
	writeFakeRepo(t, root, repo)
	proxy := filepath.Join(tmp, "proxy")
	writeFakeToolchainProxy(t, proxy, version)
	tools := toolsPath(t, append(baseTools, "unzip")...)

	p := startScript(t, "mismatch", repo, cleanEnv("PATH="+tools, "MATRIX_DATA_DIR="+data,
		"GOPROXY=file://"+proxy, "START_NO_APT=1", "HOME="+tmp))
	code := p.waitExit(t, 2*time.Minute)
	out := p.out.String()
	if code == 0 {
		t.Errorf("start.sh exited 0 with a corrupted toolchain")
	}
	if !strings.Contains(out, "start.sh: FATAL: toolchain checksum mismatch") || !strings.Contains(out, "expected sha256 "+sha) {
		t.Errorf("no clear checksum mismatch message")
	}
	if strings.Contains(out, "extracting") {
		t.Errorf("start.sh extracted a corrupted toolchain")
	}
	noMatches(t, filepath.Join(data, "toolchain", "go*"))
	noMatches(t, filepath.Join(data, "toolchain", ".extract*"))
	noMatches(t, filepath.Join(data, "toolchain", "download", "*"))
	noMatches(t, filepath.Join(data, "bin", "*"))
}

// TestToolchainResumeHTTP: a partial download is resumed (curl -C -) from an http proxy, the
// toolchain is verified and extracted, and SIGTERM during the following build exits 0 at once.
func TestToolchainResumeHTTP(t *testing.T) {
	needToolchainPlatform(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs a host go to obtain the toolchain zip")
	}
	for _, tool := range []string{"curl", "unzip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s on the host", tool)
		}
	}
	root := repoRoot(t)
	module, version, sha, size := toolchainPin(t, root)
	tmp := tempDir(t)
	zipPath := hostGo(t, tmp, cleanEnv("GOFLAGS="), "mod", "download", "-json", module+"@"+version)
	zipPath = regexp.MustCompile(`"Zip": "([^"]+)"`).FindStringSubmatch(zipPath)[1]

	proxy := filepath.Join(tmp, "proxy", "golang.org", "toolchain", "@v")
	if err := os.MkdirAll(proxy, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(zipPath, filepath.Join(proxy, version+".zip")); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var requests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests = append(requests, r.URL.Path+" range="+r.Header.Get("Range"))
		mu.Unlock()
		http.FileServer(http.Dir(filepath.Join(tmp, "proxy"))).ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)

	repo := filepath.Join(tmp, "repo")
	data := filepath.Join(tmp, "data")
	writeFakeRepo(t, root, repo)
	// A partial earlier download of the first 10 MB.
	const have = 10 << 20
	full, err := os.ReadFile(zipPath)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(full)) != size {
		t.Fatalf("host toolchain zip has %d bytes, the pin says %d", len(full), size)
	}
	writeFile(t, filepath.Join(data, "toolchain", "download", version+".zip.part"), string(full[:have]), 0o644)

	// As root, unzip and curl are left off PATH and a fake apt-get "installs" them: start.sh must
	// ask for exactly the missing ones. Otherwise they are on PATH and apt is off.
	var tools, aptLog string
	noApt := "START_NO_APT=1"
	if os.Geteuid() == 0 {
		tools = toolsPath(t, baseTools...)
		aptLog = filepath.Join(tmp, "apt.log")
		fakeAptGet(t, tools, aptLog)
		noApt = "START_NO_APT="
	} else {
		tools = toolsPath(t, append(baseTools, "unzip", "curl")...)
	}
	p := startScript(t, "resume", repo, cleanEnv("PATH="+tools, "MATRIX_DATA_DIR="+data,
		"GOPROXY="+srv.URL, "GOCACHE="+filepath.Join(tmp, "gocache"), noApt, "HOME="+tmp))
	p.waitOutput(t, regexp.MustCompile(`start\.sh: building`), 3*time.Minute)
	code, d := p.stop(t, syscall.SIGTERM, 20*time.Second)
	t.Logf("SIGTERM during the build -> exit %d after %s", code, d.Round(time.Millisecond))
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM during the build, want 0", code)
	}
	out := p.out.String()
	if !strings.Contains(out, fmt.Sprintf("have %d of %d bytes", have, size)) {
		t.Errorf("start.sh did not resume from %d bytes", have)
	}
	mu.Lock()
	wantReq := fmt.Sprintf("/golang.org/toolchain/@v/%s.zip range=bytes=%d-", version, have)
	if len(requests) == 0 || requests[0] != wantReq {
		t.Errorf("requests %q, want the first to be %q", requests, wantReq)
	}
	mu.Unlock()
	goBin := filepath.Join(data, "toolchain", "go"+strings.TrimPrefix(version, "v0.0.1-go"), "bin", "go")
	if b, err := exec.Command(goBin, "version").Output(); err != nil || !strings.Contains(string(b), "go"+strings.Split(strings.TrimPrefix(version, "v0.0.1-go"), ".linux")[0]) {
		t.Errorf("%s version: %q %v", goBin, b, err)
	}
	if !strings.Contains(out, "verifying sha256") || strings.Contains(out, "mismatch") {
		t.Errorf("no successful verification of %s", sha)
	}
	noMatches(t, filepath.Join(data, "toolchain", ".extract*"))
	noMatches(t, filepath.Join(data, "toolchain", "download", "*"))
	noMatches(t, filepath.Join(data, "bin", "homeserver-*"))
	if aptLog != "" {
		b, _ := os.ReadFile(aptLog)
		if want := "update -qq\ninstall -y -qq --no-install-recommends unzip curl\n"; !strings.HasPrefix(string(b), want) {
			t.Errorf("apt-get calls:\n%s\nwant them to start with:\n%s", b, want)
		}
	}
}

// TestUnprivilegedNoApt: not root (as root the test drops to uid 65534) with a missing tool:
// start.sh uses ./data, does not run apt-get, and fails with a clear message.
func TestUnprivilegedNoApt(t *testing.T) {
	needToolchainPlatform(t)
	root := repoRoot(t)
	_, version, _, _ := toolchainPin(t, root)
	tmp := tempDir(t)
	repo := filepath.Join(tmp, "repo")
	writeFakeRepo(t, root, repo)
	proxy := filepath.Join(tmp, "proxy")
	writeFakeToolchainProxy(t, proxy, version)
	tools := toolsPath(t, baseTools...) // no unzip
	aptLog := filepath.Join(tmp, "apt.log")
	fakeAptGet(t, tools, aptLog)

	var opts []func(*exec.Cmd)
	if os.Geteuid() == 0 {
		const nobody = 65534
		for _, d := range []string{filepath.Dir(tmp), tmp, filepath.Dir(tools)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		filepath.WalkDir(repo, func(path string, d os.DirEntry, err error) error {
			if err == nil {
				err = os.Lchown(path, nobody, nobody)
			}
			return err
		})
		opts = append(opts, func(c *exec.Cmd) {
			c.SysProcAttr.Credential = &syscall.Credential{Uid: nobody, Gid: nobody}
		})
		t.Logf("running start.sh as uid %d", nobody)
	}
	p := startScript(t, "unprivileged", repo, cleanEnv("PATH="+tools, "HOME="+repo, "GOPROXY=file://"+proxy), opts...)
	if code := p.waitExit(t, time.Minute); code == 0 {
		t.Errorf("start.sh exited 0 without unzip")
	}
	out := p.out.String()
	if !strings.Contains(out, "FATAL: missing unzip; install them") {
		t.Errorf("no clear message about the missing unzip")
	}
	if _, err := os.Stat("/data"); err != nil || os.Geteuid() == 0 {
		// Unprivileged, /data (if any) is not writable: the default is ./data.
		if !strings.Contains(out, "data dir "+filepath.Join(repo, "data")+" (default ./data)") {
			t.Errorf("start.sh did not default to ./data")
		}
	}
	if b, err := os.ReadFile(aptLog); err == nil {
		t.Errorf("apt-get was run unprivileged: %s", b)
	}
}

// TestToolchainBuild is the Ratio1 path end to end without go on PATH: fetch the pinned
// toolchain from a file:// module proxy (the host's module cache, so no network), verify and
// extract it under <data>/toolchain, download the modules into <data>, build the real server,
// serve /versions; then restart on the same data dir without unzip, curl or any proxy.
func TestToolchainBuild(t *testing.T) {
	needToolchainPlatform(t)
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("needs a host go to fill the file:// proxy")
	}
	root := repoRoot(t)
	module, version, _, _ := toolchainPin(t, root)
	tmp := tempDir(t)
	repo := filepath.Join(tmp, "repo")
	data := filepath.Join(tmp, "data")
	copyRepo(t, root, repo)

	// Setup with the host go: the toolchain zip and every module of the build land in the host
	// module cache (whose cache/download dir is a module proxy), and the build cache gets warm.
	t0 := time.Now()
	hostEnv := cleanEnv("GOFLAGS=", "CGO_ENABLED=0")
	hostGo(t, tmp, hostEnv, "mod", "download", module+"@"+version)
	hostGo(t, repo, hostEnv, "build", "-trimpath", "-o", filepath.Join(tmp, "prewarm"), "./cmd/homeserver")
	modcache := hostGo(t, tmp, hostEnv, "env", "GOMODCACHE")
	gocache := hostGo(t, tmp, hostEnv, "env", "GOCACHE")
	t.Logf("setup with the host go took %s", time.Since(t0).Round(time.Millisecond))

	tools := toolsPath(t, append(baseTools, "unzip", "curl")...)
	addr := freeAddr(t)
	dead := "http://127.0.0.1:9" // any attempt to use the network fails
	env := cleanEnv("PATH="+tools, "HOME="+filepath.Join(tmp, "home"), "MATRIX_DATA_DIR="+data,
		"MATRIX_LISTEN="+addr, "MATRIX_SERVER_NAME=localhost", "START_NO_APT=1",
		"GOPROXY=file://"+filepath.Join(modcache, "cache", "download"), "GOCACHE="+gocache,
		"GOFLAGS=", "GOROOT=", "GOPATH=", "GOMODCACHE=", "GOTOOLCHAIN=",
		"http_proxy="+dead, "https_proxy="+dead, "HTTP_PROXY="+dead, "HTTPS_PROXY="+dead)
	p := startScript(t, "toolchain", repo, env)
	took := p.waitVersions(t, addr, 8*time.Minute)
	t.Logf("toolchain mode: fetch + extract + build + serve took %s", took.Round(time.Millisecond))
	out := p.out.String()
	for _, want := range []string{"copying toolchain " + version, "verifying sha256", "extracting toolchain", "toolchain ready", "built "} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if strings.Contains(out, "using go on PATH") {
		t.Errorf("start.sh found a go on PATH")
	}
	tcDir := filepath.Join(data, "toolchain", "go"+strings.TrimPrefix(version, "v0.0.1-go"))
	if _, err := os.Stat(filepath.Join(tcDir, "bin", "go")); err != nil {
		t.Errorf("toolchain not extracted into %s: %v", tcDir, err)
	}
	if m, _ := filepath.Glob(filepath.Join(data, "go", "pkg", "mod", "cache", "download", "*")); len(m) == 0 {
		t.Errorf("no modules were downloaded into %s/go/pkg/mod", data)
	}
	noMatches(t, filepath.Join(data, "toolchain", ".extract*"))
	noMatches(t, filepath.Join(data, "toolchain", "download", "*"))
	if code, _ := p.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}

	// A replaced container: same data dir, nothing to download or extract with.
	tools2 := toolsPath(t, baseTools...)
	addr = freeAddr(t)
	env2 := cleanEnv("PATH="+tools2, "HOME="+filepath.Join(tmp, "home"), "MATRIX_DATA_DIR="+data,
		"MATRIX_LISTEN="+addr, "MATRIX_SERVER_NAME=localhost", "START_NO_APT=1", "GOPROXY=off",
		"http_proxy="+dead, "https_proxy="+dead)
	p2 := startScript(t, "toolchain-reuse", repo, env2)
	took = p2.waitVersions(t, addr, 60*time.Second)
	t.Logf("restart on the same data dir answered after %s", took.Round(time.Millisecond))
	out = p2.out.String()
	if !strings.Contains(out, "reusing binary") || strings.Contains(out, "toolchain") || strings.Contains(out, "building") {
		t.Errorf("the restart did more than reuse the binary")
	}
	if code, _ := p2.stop(t, syscall.SIGTERM, 30*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
}

// TestCommitID: in a clean git checkout the commit ID is HEAD; with local changes (or without
// .git) it is a hash of the source, and it changes with the source.
func TestCommitID(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("needs git")
	}
	root := repoRoot(t)
	tmp := tempDir(t)
	repo := filepath.Join(tmp, "repo")
	writeFakeRepo(t, root, repo)
	git := func(args ...string) string {
		cmd := exec.Command("git", append([]string{"-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"}, args...)...)
		cmd.Dir = repo
		cmd.Env = cleanEnv("GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	tools := toolsPath(t, append(baseTools, "unzip")...)
	id := func(name string) (string, string) {
		p := startScript(t, name, repo, cleanEnv("PATH="+tools, "MATRIX_DATA_DIR="+filepath.Join(tmp, "data"), "GOPROXY=off", "START_NO_APT=1"))
		p.waitExit(t, time.Minute)
		m := regexp.MustCompile(`start\.sh: commit (\S+)\n`).FindStringSubmatch(p.out.String())
		if m == nil {
			t.Fatalf("%s: no commit line", name)
		}
		return m[1], p.out.String()
	}

	plain, _ := id("plain-copy")
	if !regexp.MustCompile(`^src-[0-9a-f]{40}$`).MatchString(plain) {
		t.Errorf("plain copy: ID %q, want src-<hash>", plain)
	}
	git("init", "-q")
	git("add", "-A")
	git("commit", "-q", "-m", "x")
	head := git("rev-parse", "HEAD")
	if got, _ := id("clean-checkout"); got != head {
		t.Errorf("clean checkout: ID %q, want HEAD %q", got, head)
	}
	writeFile(t, filepath.Join(repo, "cmd", "homeserver", "main.go"), "package main\n\nfunc main() {}\n", 0o644)
	dirty, out := id("dirty-checkout")
	if !strings.HasPrefix(dirty, "src-") || dirty == plain || !strings.Contains(out, "has local changes") {
		t.Errorf("dirty checkout: ID %q (plain copy was %q), want a new src-<hash> and a log line", dirty, plain)
	}
}

// TestPID1 runs start.sh as PID 1 of a new PID namespace (as the runner may): it restarts a
// crashed server and stops on SIGTERM (which PID 1 only gets because it traps it).
func TestPID1(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a PID namespace")
	}
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		t.Skip("needs unshare")
	}
	if err := exec.Command(unshare, "--pid", "--fork", "--mount-proc", "true").Run(); err != nil {
		t.Skipf("cannot create a PID namespace here: %v", err)
	}
	root := repoRoot(t)
	tmp := tempDir(t)
	repo := filepath.Join(tmp, "repo")
	data := filepath.Join(tmp, "data")
	writeFakeRepo(t, root, repo)
	tools := toolsPath(t, append(baseTools, "unzip")...)
	id := fakeID(t, repo, data, tools)
	writeFile(t, filepath.Join(data, "bin", "homeserver-"+id), fmt.Sprintf(fakeServer, 1), 0o755)

	p := startScript(t, "pid1", repo, cleanEnv("PATH="+tools, "MATRIX_DATA_DIR="+data, "GOPROXY=off", "START_NO_APT=1"),
		func(c *exec.Cmd) {
			c.Path = unshare
			c.Args = []string{unshare, "--pid", "--fork", "--mount-proc", "./start.sh"}
		})
	p.waitOutput(t, regexp.MustCompile(`restarting in 1s`), 20*time.Second)
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, _ := os.ReadFile(filepath.Join(data, "fake.log"))
		if strings.Contains(string(b), "up\n") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the fake server never came up: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// start.sh is the child of unshare; it is PID 1 inside.
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", p.pid(), p.pid()))
	if err != nil {
		t.Fatal(err)
	}
	var init int
	if _, err := fmt.Sscan(string(b), &init); err != nil {
		t.Fatalf("no child of unshare: %q", b)
	}
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", init)); err != nil || !regexp.MustCompile(`(?m)^NSpid:\s+\d+\s+1$`).Match(st) {
		t.Fatalf("start.sh (pid %d) is not PID 1 of its namespace: %v\n%s", init, err, st)
	}
	if err := syscall.Kill(init, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.waitExit(t, 20*time.Second); code != 0 {
		t.Errorf("start.sh as PID 1: exit %d after SIGTERM, want 0", code)
	}
	b, _ = os.ReadFile(filepath.Join(data, "fake.log"))
	if !strings.HasSuffix(string(b), "term\n") {
		t.Errorf("the server did not get SIGTERM: %s", b)
	}
}
