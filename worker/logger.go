package worker

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/hibiken/asynq"
)

// AsynqLogger adapts slog to asynq's Logger interface.
type AsynqLogger struct{ l *slog.Logger }

// NewAsynqLogger returns an asynq logger writing to l, tagged component=asynq.
func NewAsynqLogger(l *slog.Logger) *AsynqLogger { return &AsynqLogger{l.With("component", "asynq")} }

func (a *AsynqLogger) log(level slog.Level, args ...any) {
	a.l.Log(context.Background(), level, fmt.Sprint(args...))
}

// Debug logs at debug level, but for asynq's note of every look at empty
// queues: through the wake gate it looks every few ms.
func (a *AsynqLogger) Debug(args ...any) {
	if len(args) == 1 && args[0] == "All queues are empty" {
		return
	}
	a.log(slog.LevelDebug, args...)
}

// Info logs at info level.
func (a *AsynqLogger) Info(args ...any) { a.log(slog.LevelInfo, args...) }

// Warn logs at warn level.
func (a *AsynqLogger) Warn(args ...any) { a.log(slog.LevelWarn, args...) }

// Error logs at error level.
func (a *AsynqLogger) Error(args ...any) { a.log(slog.LevelError, args...) }

// Fatal logs at error level; asynq exits after calling it.
func (a *AsynqLogger) Fatal(args ...any) { a.log(slog.LevelError, args...) }

var _ asynq.Logger = (*AsynqLogger)(nil)

func asynqLevel(s string) asynq.LogLevel {
	switch s {
	case "debug":
		return asynq.DebugLevel
	case "warn":
		return asynq.WarnLevel
	case "error":
		return asynq.ErrorLevel
	}
	return asynq.InfoLevel
}
