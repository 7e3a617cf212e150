package appliance

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"go.yaml.in/yaml/v3"

	"github.com/securechat/securechat/internal/usage"
)

// Run is `securechat serve` (docs/design.md §7): it serves until ctx ends. admin
// makes the admin API's handler (nil: no admin listener).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer, admin func(*Server, string, *slog.Logger) http.Handler) error {
	fs := usage.NewFlagSet("serve", stderr)
	var flags Config
	configPath := fs.String("config", "", "YAML configuration `file`")
	fs.StringVar(&flags.Listen, "listen", "", "UDP `address` for QUIC (default \":4433\")")
	fs.StringVar(&flags.Admin, "admin", "", "admin API `address` (default \"127.0.0.1:8080\")")
	fs.StringVar(&flags.AdminCert, "admin-cert", "", "PEM certificate `file` for HTTPS on the admin listener")
	fs.StringVar(&flags.AdminKey, "admin-key", "", "PEM private key `file` for --admin-cert")
	fs.BoolVar(&flags.AdminSelfSigned, "admin-self-signed", false, "serve the admin listener over HTTPS with a self-signed certificate kept in the data directory")
	fs.BoolVar(&flags.AdminInsecure, "admin-insecure", false, "allow plain HTTP on a non-loopback admin address (behind a TLS proxy)")
	fs.StringVar(&flags.Data, "data", "", "data `directory` (default \"./securechat-data\")")
	fs.Var(&flags.MailboxTTL, "mailbox-ttl", "how long undelivered messages wait (default 720h)")
	fs.Var(&flags.AuthTimeout, "auth-timeout", "time allowed to authenticate (default 10s)")
	fs.Var(&flags.IdleTimeout, "idle-timeout", "close connections silent for this long (default 60s)")
	fs.IntVar(&flags.MaxFrame, "max-frame", 0, "largest control frame in `bytes` (default 4194304)")
	fs.Float64Var(&flags.KeyFetchRate, "key-fetch-rate", 0, "prekey fetches per second per account (default 0.5)")
	fs.IntVar(&flags.KeyFetchBurst, "key-fetch-burst", 0, "prekey fetches at once per account (default 30)")
	fs.Float64Var(&flags.MessageRate, "message-rate", 0, "messages per second per account (default 20)")
	fs.IntVar(&flags.MessageBurst, "message-burst", 0, "messages at once per account (default 60)")
	fs.Float64Var(&flags.ByteRate, "byte-rate", 0, "payload bytes per second per account (default 1048576)")
	fs.IntVar(&flags.ByteBurst, "byte-burst", 0, "payload bytes at once per account (default 8388608)")
	fs.Float64Var(&flags.ConnRate, "conn-rate", 0, "new connections per second per IP (default 10)")
	fs.IntVar(&flags.ConnBurst, "conn-burst", 0, "new connections at once per IP (default 30)")
	fs.Float64Var(&flags.RegisterRate, "register-rate", 0, "registrations per second per IP (default 1/60)")
	fs.IntVar(&flags.RegisterBurst, "register-burst", 0, "registrations at once per IP (default 5)")
	fs.IntVar(&flags.LoginFailures, "login-failures", 0, "failed logins from one IP before it is banned (default 10)")
	fs.Var(&flags.LoginFailureWindow, "login-failure-window", "one failed login is forgiven per this (default 1m)")
	fs.Var(&flags.LoginBan, "login-ban", "how long too many failed logins ban an IP (default 15m)")
	fs.Float64Var(&flags.HandshakeRate, "handshake-rate", 0, "new handshakes per second before a QUIC Retry is required (default 100)")
	fs.IntVar(&flags.FloodBan, "flood-ban", 0, "rate-limit refusals per minute that get a source address banned (default 0: never)")
	fs.Var(&flags.AFKTimeout, "afk-timeout", "disconnect clients silent this long (default 0: off)")
	fs.IntVar(&flags.LimiterTable, "limiter-table", 0, "keys each rate limiter remembers (default 100000)")
	fs.StringVar(&flags.Registration, "registration", "", "open, invite or closed (default open)")
	fs.StringVar(&flags.LogLevel, "log-level", "", "debug, info, warn or error (default info)")
	fs.StringVar(&flags.LogFormat, "log-format", "", "text or json (default text)")
	printConfig := fs.Bool("print-config", false, "print the effective configuration as YAML and exit")
	checkConfig := fs.Bool("check-config", false, "validate the configuration and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usage.Errorf("serve: unexpected argument %q", fs.Arg(0))
	}
	var cfg Config
	if *configPath != "" {
		var err error
		if cfg, err = LoadConfig(*configPath); err != nil {
			return err
		}
	}
	overlay(&cfg, &flags, func(name string) bool { return fs.Set(name) })
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if *checkConfig {
		fmt.Fprintln(stdout, "configuration ok")
		return nil
	}
	if *printConfig {
		b, err := yaml.Marshal(cfg.withDefaults())
		if err != nil {
			return err
		}
		_, err = stdout.Write(b)
		return err
	}

	cfg = cfg.withDefaults()
	cfg.AdminHandler = admin
	cfg.Out = stdout
	if cfg.Logger == nil {
		cfg.Logger = cfg.logger(stderr)
	}
	srv, err := New(cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "securechat server listening on %s (QUIC over UDP)\n", srv.Addr())
	fmt.Fprintf(stdout, "server key fingerprint: %s\n", srv.Fingerprint())
	fmt.Fprintf(stdout, "data directory: %s\n", cfg.Data)
	return srv.Serve(ctx)
}

// overlay copies the flags that were set onto cfg: flags win over the file.
func overlay(cfg, flags *Config, set func(string) bool) {
	if set("listen") {
		cfg.Listen = flags.Listen
	}
	if set("admin") {
		cfg.Admin = flags.Admin
	}
	if set("admin-cert") {
		cfg.AdminCert = flags.AdminCert
	}
	if set("admin-key") {
		cfg.AdminKey = flags.AdminKey
	}
	if set("admin-self-signed") {
		cfg.AdminSelfSigned = flags.AdminSelfSigned
	}
	if set("admin-insecure") {
		cfg.AdminInsecure = flags.AdminInsecure
	}
	if set("data") {
		cfg.Data = flags.Data
	}
	if set("mailbox-ttl") {
		cfg.MailboxTTL = flags.MailboxTTL
	}
	if set("auth-timeout") {
		cfg.AuthTimeout = flags.AuthTimeout
	}
	if set("idle-timeout") {
		cfg.IdleTimeout = flags.IdleTimeout
	}
	if set("max-frame") {
		cfg.MaxFrame = flags.MaxFrame
	}
	if set("key-fetch-rate") {
		cfg.KeyFetchRate = flags.KeyFetchRate
	}
	if set("key-fetch-burst") {
		cfg.KeyFetchBurst = flags.KeyFetchBurst
	}
	if set("message-rate") {
		cfg.MessageRate = flags.MessageRate
	}
	if set("message-burst") {
		cfg.MessageBurst = flags.MessageBurst
	}
	if set("byte-rate") {
		cfg.ByteRate = flags.ByteRate
	}
	if set("byte-burst") {
		cfg.ByteBurst = flags.ByteBurst
	}
	if set("conn-rate") {
		cfg.ConnRate = flags.ConnRate
	}
	if set("conn-burst") {
		cfg.ConnBurst = flags.ConnBurst
	}
	if set("register-rate") {
		cfg.RegisterRate = flags.RegisterRate
	}
	if set("register-burst") {
		cfg.RegisterBurst = flags.RegisterBurst
	}
	if set("login-failures") {
		cfg.LoginFailures = flags.LoginFailures
	}
	if set("login-failure-window") {
		cfg.LoginFailureWindow = flags.LoginFailureWindow
	}
	if set("login-ban") {
		cfg.LoginBan = flags.LoginBan
	}
	if set("handshake-rate") {
		cfg.HandshakeRate = flags.HandshakeRate
	}
	if set("flood-ban") {
		cfg.FloodBan = flags.FloodBan
	}
	if set("afk-timeout") {
		cfg.AFKTimeout = flags.AFKTimeout
	}
	if set("limiter-table") {
		cfg.LimiterTable = flags.LimiterTable
	}
	if set("registration") {
		cfg.Registration = flags.Registration
	}
	if set("log-level") {
		cfg.LogLevel = flags.LogLevel
	}
	if set("log-format") {
		cfg.LogFormat = flags.LogFormat
	}
}
