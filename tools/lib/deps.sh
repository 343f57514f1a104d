# Sourced by tools/run and tools/test: installs the Debian packages Sluice needs, only when
# something is missing (a repeated run does no apt work).

# Compiler, build system and the libraries the broker links against.
SLUICE_BUILD_PKGS=(
  cmake ninja-build clang libclang-rt-14-dev pkg-config
  liburing-dev libxxhash-dev libabsl-dev libgtest-dev libgmock-dev libbenchmark-dev
  zlib1g-dev libsnappy-dev liblz4-dev libzstd-dev
  # Cluster mode: the ZooKeeper C client, and JSON for the znodes it reads and writes.
  libzookeeper-mt-dev nlohmann-json3-dev
)
# Real clients and reference tools used by the test suite and benchmarks.
SLUICE_TEST_PKGS=(
  librdkafka-dev librabbitmq-dev kcat amqp-tools
  python3 python3-confluent-kafka python3-kafka python3-pika python3-kombu
  # kafka-python's snappy, lz4 and zstd codecs (it has gzip built in).
  python3-snappy python3-lz4 python3-zstandard
  fio rabbitmq-server
  # RabbitMQ's AMQP 0-9-1 spec XML: amqp.methods_def_matches_spec checks net/amqp/methods.def.
  amqp-specs
  # npm installs the Node.js clients (kafkajs, amqplib) into the build tree on first use.
  nodejs npm
  # tools/cluster: a ZooKeeper-coordinated cluster of brokers for the cluster tests.
  python3-kazoo zookeeper
)
# tools/cluster: ZooKeeper (its server and Java libraries) and the Python client it reads it with.
SLUICE_CLUSTER_PKGS=(zookeeper python3-kazoo)

sluice_missing_pkgs() {
  local p missing=()
  for p in "$@"; do
    # Node.js from another source (e.g. NodeSource's nodejs) ships its own npm and conflicts
    # with Debian's npm package: any working npm will do.
    if [ "$p" = npm ] && command -v npm >/dev/null 2>&1; then continue; fi
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
      missing+=("$p")
    fi
  done
  echo "${missing[@]}"
}

# sluice_ensure_pkgs PKG...: apt-get installs whichever of PKG are not installed.
sluice_ensure_pkgs() {
  local missing
  missing=$(sluice_missing_pkgs "$@")
  [ -z "$missing" ] && return 0
  echo "sluice: installing missing Debian packages: $missing" >&2
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >&2
  # shellcheck disable=SC2086
  $sudo apt-get install -y -qq --no-install-recommends $missing >&2
}
