// Package cli holds the cobra commands behind the enqueue and worker
// programs, so their main packages stay a few lines long.
package cli

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/s3fleet/s3fleet/config"
)

// Exit codes.
const (
	ExitOK     = 0
	ExitFailed = 1 // an object failed or was cancelled, or the command could not run
	ExitUsage  = 2 // bad arguments, or an unknown job
)

// UsageError marks errors that exit with ExitUsage.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// ExitError carries an exit code with nothing more to print.
type ExitError struct{ Code int }

func (e ExitError) Error() string { return fmt.Sprintf("exit %d", e.Code) }

// Code maps an error from a command to the process exit code.
func Code(err error) int {
	var ee ExitError
	var ue UsageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ee):
		return ee.Code
	case errors.As(err, &ue):
		return ExitUsage
	}
	return ExitFailed
}

// Execute runs cmd and returns the exit code, printing the error if any.
func Execute(ctx context.Context, cmd *cobra.Command) int {
	cmd.SilenceErrors, cmd.SilenceUsage = true, true
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return UsageError{err} })
	err := cmd.ExecuteContext(ctx)
	if err != nil {
		var ee ExitError
		if !errors.As(err, &ee) {
			fmt.Fprintf(os.Stderr, "%s: %v\n", cmd.Name(), err)
		}
	}
	return Code(err)
}

// loadConfig reads the settings for a command.
func loadConfig(fs *pflag.FlagSet) (config.Config, error) {
	cfg, err := config.Load(fs)
	if err != nil {
		return config.Config{}, UsageError{err}
	}
	return cfg, nil
}

// usageArgs wraps a cobra argument check so its error exits with ExitUsage.
func usageArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if err := check(cmd, args); err != nil {
			return UsageError{err}
		}
		return nil
	}
}
