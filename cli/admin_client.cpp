#include "cli/admin_client.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <variant>
#include <vector>

#include "shared/admin_command.h"

#ifndef RTPC_VERSION
#define RTPC_VERSION "unknown"
#endif

namespace rtpc {
namespace {

constexpr std::string_view kProgram = "rtp_cluster_client";

using Clock = std::chrono::steady_clock;

int remainingMs(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(std::min<long long>(left, 1 << 30));
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Waits for `events` on fd until the deadline; false on timeout.
bool waitFor(int fd, short events, Clock::time_point deadline) {
  while (true) {
    pollfd p{fd, events, 0};
    const int n = ::poll(&p, 1, remainingMs(deadline));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return true;  // let the following call report the error
  }
}

std::string errnoText(int e) { return std::strerror(e); }

bool isComplete(std::string_view answer, bool& failed) {
  failed = false;
  size_t start = 0;
  std::string_view last;
  while (start < answer.size()) {
    size_t end = answer.find('\n', start);
    if (end == std::string_view::npos) end = answer.size();
    const std::string_view line = answer.substr(start, end - start);
    if (line.substr(0, 6) == "ERROR:") failed = true;
    last = line;
    start = end + 1;
  }
  if (!last.empty() && last.back() == '\r') last.remove_suffix(1);
  return failed || last == "OK";
}

void printUsage(std::FILE* out) {
  std::fprintf(out,
               "usage: %s [-s socket] [-t seconds] [command words...]\n"
               "\n"
               "Sends one admin command to a running rtp_cluster and prints the answer.\n"
               "Without command words, reads commands from standard input, one per line,\n"
               "until end of input or quit.\n"
               "\n"
               "  -s SOCKET    /path, unix:/path or tcp:host[:port] (default %s;\n"
               "               tcp port 12345)\n"
               "  -t SECONDS   give up after this long (default %d; fractions allowed)\n"
               "  -h, --help   show this help and exit\n"
               "      --version  show the version and exit\n"
               "\n"
               "Admin commands:\n",
               std::string(kProgram).c_str(), std::string(kDefaultAdminSocket).c_str(),
               kDefaultAdminTimeoutMs / 1000);
  // From the daemon's own command table, so the list cannot drift.
  for (const AdminCommandSpec& spec : adminCommands()) {
    std::string line = "  " + std::string(spec.usage);
    bool first = true;
    for (std::string_view alias : spec.aliases) {
      if (alias.empty()) continue;
      line += first ? " (also " : ", ";
      line += alias;
      first = false;
    }
    if (!first) line += ')';
    std::fprintf(out, "%s\n", line.c_str());
  }
  std::fprintf(out,
               "\n"
               "Names are free text: a command word holding spaces or quotes is sent\n"
               "quoted (ls \"Core 1\"), so give each name as one shell word:\n"
               "  %s modify \"Core 1\" pause \"relay 2\"\n"
               "A single command word is sent as it is (the whole line, quotes included).\n"
               "\n"
               "Exit status: 0 when every answer ended with OK (help and quit need none),\n"
               "1 otherwise: an ERROR answer, a truncated answer, a timeout, a socket that\n"
               "cannot be reached, or a usage error (as the daemon and the reference).\n",
               std::string(kProgram).c_str());
}

// getopt leaves a long option's text in argv and a short one's letter in optopt.
std::string optionName(char** argv, int opt) {
  if (opt != 0) return std::string("-") + static_cast<char>(opt);
  return argv[optind - 1];
}

// Exit status 1, as the daemon's usage errors and the reference client's.
int usageError(std::FILE* err, const std::string& message) {
  std::fprintf(err, "%s: %s\nTry '%s --help' for more information.\n", std::string(kProgram).c_str(),
               message.c_str(), std::string(kProgram).c_str());
  return kUsageErrorExit;
}

// One command over one connection; reports failures on err. True on success.
bool runCommand(const SocketAddress& address, const std::string& command, int timeout_ms, std::FILE* out,
                std::FILE* err) {
  const std::string name = adminSocketName(address);
  const ExchangeResult r = exchangeWithServer(address, command + "\nquit\n", timeout_ms, out);
  std::fflush(out);
  switch (r.outcome) {
    case ExchangeOutcome::kCannotConnect:
      std::fprintf(err, "%s: cannot connect to %s: %s\n", std::string(kProgram).c_str(), name.c_str(),
                   r.error.c_str());
      return false;
    case ExchangeOutcome::kTimedOut:
      std::fprintf(err, "%s: no complete answer from %s within %g s\n", std::string(kProgram).c_str(),
                   name.c_str(), timeout_ms / 1000.0);
      return false;
    case ExchangeOutcome::kIoError:
      std::fprintf(err, "%s: connection to %s failed: %s\n", std::string(kProgram).c_str(), name.c_str(),
                   r.error.c_str());
      return false;
    case ExchangeOutcome::kClosed:
      break;
  }
  if (answerSucceeded(command, r.answer)) return true;
  bool failed = false;
  if (!isComplete(r.answer, failed)) {
    std::fprintf(err, "%s: %s closed the connection %s\n", std::string(kProgram).c_str(), name.c_str(),
                 r.answer.empty() ? "without an answer" : "before the answer was complete");
  }
  return false;
}

bool lineIsBlank(std::string_view line) {
  return line.find_first_not_of(" \t") == std::string_view::npos;
}

bool isQuit(std::string_view line) {
  const AdminParseResult parsed = parseAdminLine(line);
  const AdminCommand* command = std::get_if<AdminCommand>(&parsed);
  return command != nullptr && command->action == AdminAction::kQuit;
}

int runInteractive(const SocketAddress& address, int timeout_ms, std::FILE* in, std::FILE* out, std::FILE* err) {
  const bool tty = ::isatty(::fileno(in)) == 1;
  bool all_ok = true;
  char* buffer = nullptr;
  size_t capacity = 0;
  while (true) {
    if (tty) {
      std::fputs("rtp_cluster> ", out);
      std::fflush(out);
    }
    const ssize_t n = ::getline(&buffer, &capacity, in);
    if (n < 0) {
      if (tty) std::fputc('\n', out);
      break;
    }
    std::string_view line(buffer, static_cast<size_t>(n));
    while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
    if (lineIsBlank(line)) continue;
    if (isQuit(line)) break;
    if (!runCommand(address, std::string(line), timeout_ms, out, err)) all_ok = false;
  }
  std::free(buffer);
  return all_ok ? 0 : 1;
}

}  // namespace

AddressResult parseAdminSocket(std::string_view text) {
  if (text.empty()) return AddressResult{std::nullopt, "socket is empty"};
  if (text.substr(0, 4) == "tcp:") {
    const std::string_view rest = text.substr(4);
    // A bracketed or bare IPv6 literal: tcp6, so `tcp:[::1]:1234` works.
    const bool v6 = (!rest.empty() && rest.front() == '[') ||
                    rest.find(':') != rest.rfind(':');
    return parseAddress(v6 ? Transport::kTcp6 : Transport::kTcp, rest, kDefaultAdminPort);
  }
  AddressResult r = parseAddressUri(text, Transport::kUnix, kDefaultAdminPort);
  if (r.address) {
    const Transport t = r.address->transport;
    if (t != Transport::kUnix && t != Transport::kTcp && t != Transport::kTcp6) {
      return AddressResult{std::nullopt, "must be /path, unix:/path or tcp:host[:port]"};
    }
  }
  return r;
}

std::string adminSocketName(const SocketAddress& address) {
  if (isUnixPath(address.transport)) return "unix:" + address.path;
  return "tcp:" + address.display();
}

ExchangeResult exchangeWithServer(const SocketAddress& address, std::string_view payload, int timeout_ms,
                                  std::FILE* echo) {
  const Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  ExchangeResult result;
  const auto fail = [&result](ExchangeOutcome outcome, std::string error) {
    result.outcome = outcome;
    result.error = std::move(error);
    return result;
  };

  ResolvedAddress resolved;
  std::string error;
  if (!resolveAddress(address, resolved, error)) return fail(ExchangeOutcome::kCannotConnect, error);
  Fd fd(::socket(resolved.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0) return fail(ExchangeOutcome::kCannotConnect, errnoText(errno));

  while (::connect(fd.get(), resolved.sa(), resolved.length) != 0) {
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      // A unix listener with a full backlog: try again until the deadline.
      if (remainingMs(deadline) == 0) return fail(ExchangeOutcome::kTimedOut, "connect");
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
      continue;
    }
    if (errno != EINPROGRESS) return fail(ExchangeOutcome::kCannotConnect, errnoText(errno));
    if (!waitFor(fd.get(), POLLOUT, deadline)) return fail(ExchangeOutcome::kTimedOut, "connect");
    int so_error = 0;
    socklen_t len = sizeof(so_error);
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &so_error, &len) != 0) so_error = errno;
    if (so_error != 0) return fail(ExchangeOutcome::kCannotConnect, errnoText(so_error));
    break;
  }

  size_t sent = 0;
  while (sent < payload.size()) {
    const ssize_t n = ::send(fd.get(), payload.data() + sent, payload.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!waitFor(fd.get(), POLLOUT, deadline)) return fail(ExchangeOutcome::kTimedOut, "send");
      continue;
    }
    // The server may answer and close before taking all of the payload
    // (e.g. after an ERROR): what it sent is still worth reading.
    break;
  }

  char buf[4096];
  while (true) {
    const ssize_t n = ::recv(fd.get(), buf, sizeof(buf), 0);
    if (n > 0) {
      result.answer.append(buf, static_cast<size_t>(n));
      if (echo != nullptr) std::fwrite(buf, 1, static_cast<size_t>(n), echo);
      continue;
    }
    if (n == 0) return result;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!waitFor(fd.get(), POLLIN, deadline)) return fail(ExchangeOutcome::kTimedOut, "recv");
      continue;
    }
    if (errno == ECONNRESET && !result.answer.empty()) return result;
    return fail(ExchangeOutcome::kIoError, errnoText(errno));
  }
}

std::string buildCommandLine(std::span<const std::string_view> words) {
  // One word is the whole line, as the reference sends it (scripts call
  // `rtp_cluster_client "modify c1 pause r1"`); several are joined, each
  // quoted when it holds spaces or quotes, so a name stays one word.
  if (words.size() == 1) return std::string(words[0]);
  std::string line;
  for (size_t i = 0; i < words.size(); ++i) {
    if (i > 0) line += ' ';
    line += quoteAdminWord(words[i]);
  }
  return line;
}

bool answerSucceeded(std::string_view command, std::string_view answer) {
  const AdminParseResult parsed = parseAdminLine(command);
  if (const AdminCommand* c = std::get_if<AdminCommand>(&parsed)) {
    if (c->action == AdminAction::kQuit && answer.empty()) return true;
    if (c->action == AdminAction::kHelp && answer.substr(0, 19) == "Supported commands:") return true;
  }
  bool failed = false;
  return isComplete(answer, failed) && !failed;
}

int runAdminClient(int argc, char** argv, std::FILE* in, std::FILE* out, std::FILE* err) {
  std::string socket_text(kDefaultAdminSocket);
  int timeout_ms = kDefaultAdminTimeoutMs;
  enum : int { kVersion = 1000 };
  static const option kLong[] = {
      {"help", no_argument, nullptr, 'h'},
      {"version", no_argument, nullptr, kVersion},
      {"socket", required_argument, nullptr, 's'},
      {"timeout", required_argument, nullptr, 't'},
      {nullptr, 0, nullptr, 0},
  };
  opterr = 0;
  optind = 1;
  while (true) {
    // '+': stop at the first command word, as the reference's getopt does.
    const int c = ::getopt_long(argc, argv, "+:s:t:h", kLong, nullptr);
    if (c == -1) break;
    switch (c) {
      case 'h':
        printUsage(out);
        return 0;
      case kVersion:
        std::fprintf(out, "%s %s\n", std::string(kProgram).c_str(), RTPC_VERSION);
        return 0;
      case 's':
        socket_text = optarg;
        break;
      case 't': {
        char* end = nullptr;
        errno = 0;
        const double seconds = std::strtod(optarg, &end);
        if (errno != 0 || end == optarg || *end != '\0' || !(seconds > 0) || seconds > 3600) {
          return usageError(err, "-t must be a number of seconds in (0, 3600], got \"" + std::string(optarg) + "\"");
        }
        timeout_ms = std::max(1, static_cast<int>(seconds * 1000));
        break;
      }
      case ':':
        return usageError(err, "option " + optionName(argv, optopt) + " needs a value");
      default:
        return usageError(err, "unknown option " + optionName(argv, optopt));
    }
  }
  const AddressResult address = parseAdminSocket(socket_text);
  if (!address.address) return usageError(err, "-s \"" + socket_text + "\": " + address.error);

  if (optind >= argc) return runInteractive(*address.address, timeout_ms, in, out, err);

  std::vector<std::string_view> words(argv + optind, argv + argc);
  std::string command = buildCommandLine(words);
  // A line break would smuggle a second command into the one connection.
  if (command.find_first_of("\r\n") != std::string::npos) {
    return usageError(err, "command words must not contain line breaks");
  }
  return runCommand(*address.address, command, timeout_ms, out, err) ? 0 : 1;
}

}  // namespace rtpc
