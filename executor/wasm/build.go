package wasm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Build compiles the Go function in directory dir (a package main using
// package fn) into the WebAssembly module out, running
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o out
//
// with the go command found in PATH. ctx bounds the build. On failure the
// error carries the compiler's output.
func Build(ctx context.Context, dir, out string) error {
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("wasm: build %s: %w", dir, err)
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-trimpath", "-o", abs, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	var stderr bytes.Buffer
	cmd.Stdout = &stderr
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("wasm: build %s: %w\n%s", dir, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
