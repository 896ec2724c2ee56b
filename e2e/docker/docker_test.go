// Package docker runs the container example end to end: it builds the
// image (examples/docker) with no registry, starts the five-node Compose
// example (examples/compose) under a project name of its own, drives it
// from the host with the CLI, kills and restarts a container, and tears
// everything down, checking that no container, network, volume or image
// is left. It skips, with one line, where docker or docker-compose is
// missing; `go test -short` skips it too.
package docker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/peerctl/peerctl/e2e/internal/procs"
)

// peerctl is the host's CLI, built by TestMain; nil in -short mode.
var peerctl *procs.Binary

func TestMain(m *testing.M) { os.Exit(procs.Main(m, "docker", "../..", &peerctl)) }

// Timeouts, generous for a loaded 2-core machine.
const (
	buildTimeout = 10 * time.Minute // go build (uncached) and docker build
	dockerCmd    = 2 * time.Minute  // one docker or docker-compose command
	formTimeout  = 60 * time.Second
	poll         = 250 * time.Millisecond
)

// run runs a command that must succeed and returns its output.
func run(tb testing.TB, timeout time.Duration, env []string, args ...string) string {
	tb.Helper()
	out, err := try(timeout, env, args...)
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func try(timeout time.Duration, env []string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestCompose(t *testing.T) {
	if peerctl == nil {
		t.Skip("SKIP: builds an image and starts containers: skipped in -short mode")
	}
	for _, tool := range []string{"docker", "docker-compose"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("SKIP: %s not found: the container test needs Docker Engine and docker-compose", tool)
		}
	}
	if out, err := try(30*time.Second, nil, "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("SKIP: no Docker daemon answers (%v): %s", err, strings.TrimSpace(out))
	}
	began := time.Now()
	id := fmt.Sprintf("%d%d", os.Getpid(), time.Now().UnixNano()%1e6)
	project, tag := "pctle2e"+id, "peerctl-e2e:"+id
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}

	// The image: a static binary, FROM scratch, nothing pulled.
	t.Cleanup(func() {
		if out, err := try(dockerCmd, nil, "docker", "image", "rm", "--force", tag); err != nil {
			t.Errorf("docker image rm %s: %v: %s", tag, err, out)
		}
	})
	run(t, buildTimeout, nil, filepath.Join(root, "examples/docker/build.sh"), tag)
	built := time.Since(began)

	// The Compose example, copied beside its env file (as the README
	// makes it) so the checkout is not written to.
	dir := t.TempDir()
	yml, err := os.ReadFile(filepath.Join(root, "examples/compose/compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	compose := filepath.Join(dir, "compose.yaml")
	if err := os.WriteFile(compose, yml, 0o644); err != nil {
		t.Fatal(err)
	}
	key := strings.TrimSpace(peerctl.MustCLI(t, "127.0.0.1:1", "keygen"))
	token := strings.TrimSpace(peerctl.MustCLI(t, "127.0.0.1:1", "keygen"))
	if err := os.WriteFile(filepath.Join(dir, "peerctl.env"), []byte("PEERCTL_ENCRYPT="+key+"\nPEERCTL_TOKEN="+token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	port := procs.FreePorts(t, 1)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	env := []string{"PEERCTL_IMAGE=" + tag, "PEERCTL_HOST_PORT=" + strconv.Itoa(port)}
	dc := func(args ...string) []string {
		return append([]string{"docker-compose", "-f", compose, "-p", project}, args...)
	}
	t.Cleanup(func() {
		if t.Failed() {
			out, _ := try(dockerCmd, env, dc("logs", "--no-color", "--tail", "30")...)
			t.Logf("container logs:\n%s", out)
		}
		if out, err := try(dockerCmd, env, dc("down", "--volumes", "--remove-orphans", "--timeout", "10")...); err != nil {
			t.Errorf("docker-compose down: %v\n%s", err, out)
		}
		label := "label=com.docker.compose.project=" + project
		for _, kind := range [][]string{{"ps", "-a"}, {"network", "ls"}, {"volume", "ls"}} {
			out, err := try(dockerCmd, nil, append(append([]string{"docker"}, kind...), "-q", "--filter", label)...)
			if err != nil || strings.TrimSpace(out) != "" {
				t.Errorf("docker %s after down: %q, %v; want nothing of project %s", strings.Join(kind, " "), out, err, project)
			}
		}
	})
	upAt := time.Now()
	run(t, dockerCmd, env, dc("up", "-d")...)

	cli := func(args ...string) procs.Result {
		return peerctl.CLI(t, addr, append([]string{"--token", token}, args...)...)
	}
	statusOf := func() (map[string]string, error) {
		r := cli("members", "--json")
		if r.Code != 0 {
			return nil, fmt.Errorf("members: %v", r)
		}
		return parseMembers(r.Stdout)
	}
	waitStatus := func(what string, want map[string]string) time.Duration {
		t.Helper()
		took, err := procs.WaitFor(formTimeout, poll, func() (bool, string) {
			st, err := statusOf()
			if err != nil {
				return false, err.Error()
			}
			for n, s := range want {
				if st[n] != s {
					return false, fmt.Sprintf("%s is %q", n, st[n])
				}
			}
			return true, ""
		})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return took
	}
	all := map[string]string{}
	for i := 1; i <= 5; i++ {
		all[fmt.Sprintf("node%d", i)] = "alive"
	}
	waitStatus("five containers form a cluster", all)
	t.Logf("image built in %s; 5 containers up and all alive %s after `up -d` began", built.Round(time.Millisecond), time.Since(upAt).Round(time.Millisecond))

	// The used-by flow from the host, through node1's published API.
	if r := cli("put", "greeting", "hello"); r.Code != 0 {
		t.Fatalf("put: %v", r)
	}
	waitGet(t, cli, "node4", "greeting", "hello")
	if r := peerctl.CLI(t, addr, "members"); r.Code == 0 || !strings.Contains(r.Stderr, "token") {
		t.Errorf("members without the token: %v; want refused, naming the token", r)
	}
	// The image's HEALTHCHECK (peerctl health, with PEERCTL_TOKEN from the
	// environment: the API refuses it without) reports healthy.
	node2 := containerID(t, env, dc, "node2")
	took, err := procs.WaitFor(formTimeout, time.Second, func() (bool, string) {
		h, err := try(dockerCmd, nil, "docker", "inspect", "--format", "{{.State.Health.Status}}", node2)
		return err == nil && strings.TrimSpace(h) == "healthy", strings.TrimSpace(h)
	})
	if err != nil {
		t.Errorf("node2's HEALTHCHECK: %v", err)
	} else {
		t.Logf("node2 container healthy (HEALTHCHECK with the token) after a further %s", took.Round(time.Millisecond))
	}

	// docker kill: node3 is seen failed; writes go on; docker start: it
	// catches up.
	node3 := containerID(t, env, dc, "node3")
	run(t, dockerCmd, nil, "docker", "kill", node3)
	killedAt := time.Now()
	down := map[string]string{"node3": "failed"}
	waitStatus("node3 seen failed after docker kill", down)
	t.Logf("node3 seen failed %s after docker kill", time.Since(killedAt).Round(time.Millisecond))
	const missed = 20
	for i := range missed {
		if r := cli("put", fmt.Sprintf("while-down-%02d", i), strconv.Itoa(i)); r.Code != 0 {
			t.Fatalf("put while node3 is down: %v", r)
		}
	}
	run(t, dockerCmd, nil, "docker", "start", node3)
	startedAt := time.Now()
	waitStatus("node3 alive after docker start", all)
	for i := range missed {
		waitGet(t, cli, "node3", fmt.Sprintf("while-down-%02d", i), strconv.Itoa(i))
	}
	if _, err := procs.WaitFor(formTimeout, poll, func() (bool, string) {
		r := cli("check")
		return r.Code == 0, r.String()
	}); err != nil {
		t.Errorf("check after restart: %v", err)
	}
	t.Logf("node3 alive and holding the %d writes it missed %s after docker start; TestCompose took %s",
		missed, time.Since(startedAt).Round(time.Millisecond), time.Since(began).Round(time.Millisecond))
}

// parseMembers maps name to status from `members --json`.
func parseMembers(out string) (map[string]string, error) {
	var rows []struct{ Name, Status string }
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		return nil, fmt.Errorf("members --json: %w", err)
	}
	st := map[string]string{}
	for _, m := range rows {
		st[m.Name] = m.Status
	}
	return st, nil
}

// waitGet waits until get KEY --node NODE prints want.
func waitGet(t *testing.T, cli func(...string) procs.Result, node, key, want string) {
	t.Helper()
	if _, err := procs.WaitFor(formTimeout, poll, func() (bool, string) {
		r := cli("get", key, "--node", node)
		return r.Code == 0 && strings.TrimSpace(r.Stdout) == want, r.String()
	}); err != nil {
		t.Fatalf("get %s at %s: %v", key, node, err)
	}
}

// containerID returns the ID of a service's container.
func containerID(t *testing.T, env []string, dc func(...string) []string, service string) string {
	t.Helper()
	id := strings.TrimSpace(run(t, dockerCmd, env, dc("ps", "-q", service)...))
	if id == "" || strings.Contains(id, "\n") {
		t.Fatalf("container of %s: %q", service, id)
	}
	return id
}
