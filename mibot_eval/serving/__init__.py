"""The policy behind a wire: `mibot-eval serve` and everything that talks to it.

  server.py       the policy server (WebSocket, msgpack + numpy, batched across clients, bounded)
  client.py       RemotePolicy: a Policy served by it (`run --policy ws://...`)
  codec.py        the validated msgpack wire format, also between the main process and its workers
  replicas.py     `run --replicas R`: R private policy servers on this machine's device
  process_env.py  the environment every child process of the harness starts with

May import: config, types, errors, policy/. Never run/, suites/ or results/.
"""
