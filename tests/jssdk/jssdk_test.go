// Package jssdk runs matrix-js-sdk, the library under Element Web, against
// an in-process server. It needs node and npm; without them it is skipped.
package jssdk

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"matrixhs/tests/testserver"
)

func TestMatrixJSSDK(t *testing.T) { runScript(t, "client.mjs") }

// TestMatrixJSSDKSlidingSync runs js-sdk's SlidingSync (Element Web's
// sliding sync mode) against the server's MSC4186 endpoint.
func TestMatrixJSSDKSlidingSync(t *testing.T) { runScript(t, "sliding.mjs") }

// TestMatrixJSSDKEncryption runs Element Web's E2EE stack (js-sdk with the
// Rust crypto in WASM): an encrypted message decrypted by another user.
func TestMatrixJSSDKEncryption(t *testing.T) { runScript(t, "e2ee.mjs") }

func runScript(t *testing.T, script string) {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := os.Stat("node_modules/matrix-js-sdk"); err != nil {
		install := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
		if out, err := install.CombinedOutput(); err != nil {
			t.Fatalf("npm ci: %v\n%s", err, out)
		}
	}
	s := testserver.Start(t, nil)
	cmd := exec.CommandContext(ctx, "node", script)
	cmd.Env = append(os.Environ(), "HS="+s.URL())
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("matrix-js-sdk flow failed: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
