// Package cli is peerctl's command line: the `agent` command that runs a
// daemon, and the client commands that call a daemon's HTTP API (see
// internal/api). One file per command; each is a thin API call plus
// formatting, printed from structs this package owns so the API types can
// change freely.
//
// Commands never exit the process or print their own errors: they return
// them, and main.go turns an error into "peerctl: <err>" and an exit code.
// Output goes to App.Writer, input comes from App.Reader, so tests run the
// App in-process with buffers.
package cli

import (
	"fmt"
	"runtime"

	"github.com/urfave/cli/v2"

	"github.com/peerctl/peerctl/internal/api"
	"github.com/peerctl/peerctl/internal/bench"
)

// DefaultAddr is the API address client commands call unless --addr or
// PEERCTL_ADDR says otherwise; it is the agent's default --api.
const DefaultAddr = "127.0.0.1:7947"

// NewApp returns the peerctl App. Its ExitErrHandler does nothing, so
// running it never exits the process: the caller maps the returned error
// to an exit code (urfave's cli.Exit codes included).
func NewApp() *cli.App { return newApp(startAgent) }

// newApp is NewApp with the function the agent command starts a daemon
// with; tests pass a fake.
func newApp(create createFunc) *cli.App {
	app := &cli.App{
		Name:    "peerctl",
		Usage:   "a peer-to-peer gossip key-value store: daemon and client in one binary",
		Version: fmt.Sprintf("%s (%s, %s/%s)", api.Version, runtime.Version(), runtime.GOOS, runtime.GOARCH),
		UsageText: `peerctl agent --name NAME --data-dir DIR [--join HOST:PORT]   run a daemon
peerctl [--addr HOST:PORT] COMMAND [options] [args]          ask a daemon
                                                             (--addr: HOST:PORT or http://HOST:PORT)

Examples:
  peerctl agent --name n1 --data-dir /tmp/n1
  peerctl agent --name n2 --data-dir /tmp/n2 --bind 127.0.0.1:7956 --api 127.0.0.1:7957 --join 127.0.0.1:7946
  peerctl put greeting hello
  peerctl --addr 127.0.0.1:7957 get greeting
  peerctl get greeting --all

Flags go before or after a command's arguments; "--" ends them.`,
		Description: `Each daemon (peerctl agent) holds a full copy of the key-value store and
gossips with its peers; writes at any node reach all of them. Client
commands talk to the daemon at --addr; most take --node NAME to act on
another member through it, and --json for output meant for scripts.`,
		EnableBashCompletion: true,
		Flags: []cli.Flag{
			&cli.StringFlag{
				Name:    "addr",
				Usage:   "HTTP API address `HOST:PORT` (or http://HOST:PORT) of the daemon that client commands call; also after the command name",
				EnvVars: []string{"PEERCTL_ADDR"},
				Value:   DefaultAddr,
			},
		},
		Commands:       commands(create),
		Before:         checkAddr,
		Action:         rootAction,
		OnUsageError:   usageError,
		ExitErrHandler: func(*cli.Context, error) {}, // main.go maps errors to exit codes
	}
	for _, c := range app.Commands {
		if c.OnUsageError == nil {
			c.OnUsageError = usageError
		}
	}
	return app
}

// commands lists peerctl's commands, grouped in help by Category. To add
// one, write cli/NAME.go with a func returning its *cli.Command and list
// it here.
func commands(create createFunc) []*cli.Command {
	return []*cli.Command{
		agentCommand(create),

		membersCommand(),
		leaderCommand(), // leader.go
		watchCommand(),
		infoCommand(),
		killCommand(),
		leaveCommand(),

		putCommand(),
		getCommand(),
		delCommand(),
		keysCommand(),
		lockCommand(), // lock.go
		checkCommand(),

		pauseCommand(),
		partitionCommand(),
		isolateCommand(),
		delayCommand(),
		lossCommand(),
		healCommand(),
		faultsCommand(),

		upCommand(),
		demoCommand(),
		benchCommand(),
		keygenCommand(),
		versionCommand(),
		completionCommand(),
	}
}

// benchCommand is `peerctl bench`, from the benchmark harness.
func benchCommand() *cli.Command {
	c := bench.Command()
	c.Category = catTools
	return c
}

// Help categories.
const (
	catDaemon  = "daemon"
	catCluster = "cluster"
	catData    = "data"
	catFaults  = "faults"
	catTools   = "tools"
)

// rootAction runs for `peerctl` with no command, or an unknown one; for
// a near miss it names the command meant.
func rootAction(c *cli.Context) error {
	if c.Args().Present() {
		name := c.Args().First()
		if s := suggest(c.App.Commands, name); s != "" {
			return fmt.Errorf("unknown command %q. Did you mean %s? (see `peerctl --help`)", name, s)
		}
		return fmt.Errorf("unknown command %q (see `peerctl --help`)", name)
	}
	return cli.ShowAppHelp(c)
}

// checkAddr accepts --addr as HOST:PORT or http://HOST:PORT, and stores
// the HOST:PORT form for the commands.
func checkAddr(c *cli.Context) error {
	addr, err := normalizeAddr(c.String("addr"))
	if err != nil {
		return err
	}
	if addr != c.String("addr") {
		return c.Set("addr", addr)
	}
	return nil
}

// usageError turns a flag parse error into one line that points at help.
func usageError(c *cli.Context, err error, _ bool) error {
	name := "peerctl"
	flags := c.App.Flags
	if c.Command != nil && c.Command.HelpName != "" {
		name = c.Command.HelpName
		flags = c.Command.Flags
	}
	return fmt.Errorf("%w (see `%s --help`)", durationHint(flags, err), name)
}
