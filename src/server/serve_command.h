// `vlm serve`: load a model and serve the OpenAI-compatible API until SIGINT/SIGTERM.
#pragma once

namespace vlm::server {

// argv[0] is the subcommand name ("serve"); returns the exit status (0 ok, 1 runtime error, 2 bad usage).
int serve_command(int argc, char** argv);

}  // namespace vlm::server
