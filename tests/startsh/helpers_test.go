package startsh_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer collects the output of start.sh while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a running start.sh, in its own process group.
type proc struct {
	cmd   *exec.Cmd
	out   *syncBuffer
	done  chan struct{}
	err   error // valid after done is closed
	start time.Time
	end   time.Time // valid after done is closed
	name  string
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// exitCode is valid after done is closed.
func (p *proc) exitCode() int {
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// startScript runs ./start.sh in dir with exactly env. The cleanup kills the whole process group
// (start.sh, the server, any compiler it left behind) and logs the output.
func startScript(t *testing.T, name, dir string, env []string, opts ...func(*exec.Cmd)) *proc {
	t.Helper()
	cmd := exec.Command("./start.sh")
	cmd.Dir = dir
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	for _, o := range opts {
		o(cmd)
	}
	out := &syncBuffer{}
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: start ./start.sh: %v", name, err)
	}
	p := &proc{cmd: cmd, out: out, done: make(chan struct{}), start: time.Now(), name: name}
	go func() {
		p.err = cmd.Wait()
		p.end = time.Now()
		close(p.done)
	}()
	t.Cleanup(func() {
		status := "killed by the cleanup"
		if p.exited() {
			status = fmt.Sprintf("exited (%v) after %s", p.err, p.end.Sub(p.start).Round(time.Millisecond))
		}
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			t.Errorf("%s: start.sh (pid %d) did not die after SIGKILL", name, cmd.Process.Pid)
		}
		t.Logf("%s: start.sh %s; its output:\n%s", name, status, out.String())
	})
	return p
}

// waitExit waits for start.sh to exit and returns its exit code.
func (p *proc) waitExit(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
		return p.exitCode()
	case <-time.After(timeout):
		t.Fatalf("%s: start.sh did not exit within %s", p.name, timeout)
		return -1
	}
}

// stop sends sig to start.sh (not to its group) and returns its exit code and how long it took.
func (p *proc) stop(t *testing.T, sig syscall.Signal, timeout time.Duration) (int, time.Duration) {
	t.Helper()
	t0 := time.Now()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatalf("%s: signal start.sh: %v", p.name, err)
	}
	code := p.waitExit(t, timeout)
	return code, time.Since(t0)
}

// waitOutput polls until the output matches re.
func (p *proc) waitOutput(t *testing.T, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := re.FindStringSubmatch(p.out.String()); m != nil {
			return m
		}
		if p.exited() {
			if m := re.FindStringSubmatch(p.out.String()); m != nil {
				return m
			}
			t.Fatalf("%s: start.sh exited (%v) before printing %q", p.name, p.err, re)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: start.sh did not print %q within %s", p.name, re, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitVersions polls GET /_matrix/client/versions until it answers 200.
func (p *proc) waitVersions(t *testing.T, addr string, timeout time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	deadline := t0.Add(timeout)
	client := &http.Client{Timeout: 2 * time.Second}
	url := "http://" + addr + "/_matrix/client/versions"
	var last string
	for {
		resp, err := client.Get(url)
		if err == nil {
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return time.Since(t0)
			}
			last = fmt.Sprintf("status %d: %s", resp.StatusCode, body)
		} else {
			last = err.Error()
		}
		if p.exited() {
			t.Fatalf("%s: start.sh exited (%v) before %s answered 200 (last: %s)", p.name, p.err, url, last)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s did not answer 200 within %s (last: %s)", p.name, url, timeout, last)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// procStat returns the state and parent PID of pid from /proc.
func procStat(pid int) (state byte, ppid int, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return 0, 0, false
	}
	ppid, err = strconv.Atoi(f[1])
	if err != nil {
		return 0, 0, false
	}
	return f[0][0], ppid, true
}

// alive reports whether pid is a running (not zombie) process.
func alive(pid int) bool {
	st, _, ok := procStat(pid)
	return ok && st != 'Z' && st != 'X'
}

// serverPID polls <data>/homeserver.pid for a live child of start.sh other than notPID.
func (p *proc) serverPID(t *testing.T, data string, notPID int, timeout time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last string
	for {
		b, err := os.ReadFile(filepath.Join(data, "homeserver.pid"))
		if err == nil {
			pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err == nil && pid != notPID {
				st, ppid, ok := procStat(pid)
				switch {
				case !ok:
					last = fmt.Sprintf("pid %d from the pid file does not exist", pid)
				case st == 'Z':
					last = fmt.Sprintf("pid %d is a zombie", pid)
				case ppid != p.pid():
					last = fmt.Sprintf("pid %d has parent %d, not start.sh (%d)", pid, ppid, p.pid())
				default:
					return pid
				}
			} else {
				last = fmt.Sprintf("pid file holds %q", b)
			}
		} else {
			last = err.Error()
		}
		if p.exited() {
			t.Fatalf("%s: start.sh exited (%v) while waiting for a server pid (last: %s)", p.name, p.err, last)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no new server pid within %s (last: %s)", p.name, timeout, last)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitGone polls until pid is no longer a running process.
func waitGone(t *testing.T, pid int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still running after %s", pid, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return addr
}

// repoRoot is the top of the git work tree that holds this test.
func repoRoot(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("git", "rev-parse", "--show-toplevel").Output()
	if err != nil {
		t.Fatalf("git rev-parse --show-toplevel: %v", err)
	}
	return strings.TrimSpace(string(out))
}

// copyRepo copies the tracked and untracked-but-not-ignored files of root into dst (no .git):
// what a fresh clone of the current working tree would hold.
func copyRepo(t *testing.T, root, dst string) {
	t.Helper()
	cmd := exec.Command("git", "ls-files", "-co", "--exclude-standard", "-z")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	n := 0
	for _, rel := range strings.Split(string(out), "\x00") {
		// data/ is where start.sh keeps its state on a developer machine: never part of the source.
		if rel == "" || rel == "data" || strings.HasPrefix(rel, "data/") {
			continue
		}
		src := filepath.Join(root, rel)
		fi, err := os.Lstat(src)
		if err != nil || fi.IsDir() {
			continue // deleted in the working tree, or a submodule
		}
		d := filepath.Join(dst, rel)
		if err := os.MkdirAll(filepath.Dir(d), 0o755); err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, d); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if !fi.Mode().IsRegular() {
			continue
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(d, b, fi.Mode().Perm()); err != nil {
			t.Fatal(err)
		}
		n++
	}
	for _, need := range []string{"start.sh", "go.mod", "scripts/toolchain.env"} {
		if _, err := os.Stat(filepath.Join(dst, need)); err != nil {
			t.Fatalf("repo copy lacks %s: %v", need, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "cmd", "homeserver")); err != nil {
		t.Fatalf("the repo has no ./cmd/homeserver yet: %v", err)
	}
	t.Logf("copied %d files of %s to %s", n, root, dst)
}

// writeFakeRepo creates a tiny module with start.sh, scripts/ and a stdlib-only ./cmd/homeserver
// that serves /_matrix/client/versions: for tests of start.sh that do not need the real server.
func writeFakeRepo(t *testing.T, root, dst string) {
	t.Helper()
	files := map[string]string{
		"go.mod": "module fakehs\n\ngo 1.26\n",
		"cmd/homeserver/main.go": `package main

import (
	"context"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	srv := &http.Server{Addr: os.Getenv("MATRIX_LISTEN")}
	http.HandleFunc("/_matrix/client/versions", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("{\"versions\":[\"v1.11\"]}"))
	})
	go func() { <-ctx.Done(); srv.Shutdown(context.Background()) }()
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		panic(err)
	}
}
`,
	}
	for rel, content := range files {
		writeFile(t, filepath.Join(dst, rel), content, 0o644)
	}
	for _, rel := range []string{"start.sh", "scripts/toolchain.env"} {
		b, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		fi, _ := os.Stat(filepath.Join(root, rel))
		writeFile(t, filepath.Join(dst, rel), string(b), fi.Mode().Perm())
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

// tempDir is t.TempDir that can also be removed when it holds a read-only Go module cache.
func tempDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() {
		_ = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				_ = os.Chmod(path, 0o755)
			}
			return nil
		})
	})
	return dir
}

// baseTools are the commands start.sh may use (all in ubuntu:22.04 plus git, which the runner
// installs). A PATH made of symlinks to them has no go.
var baseTools = []string{
	"bash", "sh", "env", "cat", "sed", "grep", "find", "sort", "xargs", "sha256sum", "cut", "stat",
	"mkdir", "rm", "mv", "cp", "ln", "readlink", "basename", "dirname", "id", "uname", "tail",
	"head", "sleep", "flock", "chmod", "wc", "git",
}

// toolsPath builds a directory of symlinks to the named host commands, for use as PATH.
func toolsPath(t *testing.T, names ...string) string {
	t.Helper()
	dir := filepath.Join(tempDir(t), "path")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		p, err := exec.LookPath(n)
		if err != nil {
			t.Logf("tool %s not found on the host; not on the test PATH", n)
			continue
		}
		if err := os.Symlink(p, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "go")); err == nil {
		t.Fatal("go ended up on the test PATH")
	}
	return dir
}

// cleanEnv is the environment of the test minus everything that steers start.sh or the server.
func cleanEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "MATRIX_") || strings.HasPrefix(k, "START_") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// toolchainPin reads scripts/toolchain.env.
func toolchainPin(t *testing.T, root string) (module, version, sha string, size int64) {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "scripts", "toolchain.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kv := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			kv[k] = v
		}
	}
	arch := runtime.GOARCH
	goVer := kv["GO_TOOLCHAIN_GO_VERSION"]
	sha = kv["GO_TOOLCHAIN_SHA256_linux_"+arch]
	size, _ = strconv.ParseInt(kv["GO_TOOLCHAIN_SIZE_linux_"+arch], 10, 64)
	if goVer == "" || sha == "" || size == 0 {
		t.Fatalf("scripts/toolchain.env has no complete pin for linux-%s: %v", arch, kv)
	}
	return "golang.org/toolchain", "v0.0.1-go" + goVer + ".linux-" + arch, sha, size
}

func needToolchainPlatform(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" || (runtime.GOARCH != "amd64" && runtime.GOARCH != "arm64") {
		t.Skipf("start.sh pins toolchains for linux/amd64 and linux/arm64 only, not %s/%s", runtime.GOOS, runtime.GOARCH)
	}
}

// hostGo runs the host go with the test's environment and returns its stdout.
func hostGo(t *testing.T, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = dir
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// noEntries fails when dir holds anything matching the pattern.
func noMatches(t *testing.T, pattern string) {
	t.Helper()
	m, _ := filepath.Glob(pattern)
	if len(m) > 0 {
		t.Errorf("unexpected files: %v", m)
	}
}

// fakeAptGet puts an apt-get into the tools dir that records its arguments in log and "installs"
// unzip and curl by linking the host's into the tools dir.
func fakeAptGet(t *testing.T, tools, log string) {
	t.Helper()
	script := "#!/bin/bash\necho \"$*\" >>" + shellQuote(log) + "\n" +
		"[ \"$1\" = install ] || exit 0\nfor a in \"$@\"; do case $a in\n"
	for _, tool := range []string{"unzip", "curl"} {
		if p, err := exec.LookPath(tool); err == nil {
			script += fmt.Sprintf("%s) ln -sf %s %s ;;\n", tool, shellQuote(p), shellQuote(filepath.Join(tools, tool)))
		}
	}
	script += "esac; done\n"
	writeFile(t, filepath.Join(tools, "apt-get"), script, 0o755)
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
