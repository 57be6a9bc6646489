#!/usr/bin/env bash
# (b) Build and run every test (Release). With --sanitize, a separate
# Debug build under AddressSanitizer and UndefinedBehaviorSanitizer runs the
# unit tests; the real-shape model tests are left to the Release run because
# they take minutes under the sanitizers.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="$(nproc)"
if [ "${1:-}" = "--sanitize" ]; then
  # -O2 keeps the sanitized run within minutes; the sanitizers work as well.
  # -g1 (line tables only) is all the sanitizers' stack traces read, and
  # compiles faster than full -g: the build is half of this run's time.
  # The test files themselves at -O1 (CMakeLists.txt's default for every
  # build): they cost the compiler 30-45% less than at -O2 (with CLI11 in
  # two unity files, the build went from 595 to 509 s), and the tests ran
  # ~5% longer (495 s of test time against 472). At -O0 the tests' own
  # loops (the checkpoints HfCheckpoint writes) made the run 845 s instead
  # of 467.
  # -no-pie: a position-independent executable has its pointers relocated
  # at every start, and the sanitized test binary's touched ~9,500 pages
  # doing so: 0.28 s of each test process's start against 0.16 s without
  # (Zen 5 VM). The run starts ~1,000 such processes (each test, and the
  # CLI the tests call). The Release build stays PIE.
  # The test sources under AddressSanitizer only, not UBSan: the library and
  # the CLI, the code under test, keep both. UBSan's checks (with
  # -fno-sanitize-recover) doubled the tests' compile time: 539 s of
  # compiler time for the test files with both, 372 s with ASan alone (Zen 5
  # VM; test_hf_checkpoint.cpp 34 -> 21 s, without any sanitizer 12 s).
  # Without ASan too they would save another 100 s, but a test's own
  # out-of-bounds read would go unseen, and inline library code that the
  # linker takes from a test's object file would run unchecked.
  cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O2 -g1 -DNDEBUG" \
    -DAMA_SANITIZE=ON -DAMA_BUILD_BENCH=OFF -DAMA_TESTS_OPT=-O1 -DAMA_TESTS_NO_SANITIZE=undefined \
    -DCMAKE_EXE_LINKER_FLAGS=-no-pie
  cmake --build build-asan -j"$jobs"
  export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  # Left to the Release run: the real-shape model tests (minutes under the
  # sanitizers); the peak-RSS comparison of 10- and 60-minute files (ASan's
  # shadow memory and quarantine make RSS meaningless); and the tests that
  # drive whole decodes through outside clients and many processes (the
  # Node SDK and Chromium, the load generator and haproxy, the CLI matrix,
  # beams with fallback over several files or clients, twenty clients at
  # once against one server: 58 s alone under ASan), which take tens of minutes
  # here and exercise the same code as the unit, scheduler and server tests
  # that do run under the sanitizers; the quantized-model logits fidelity
  # (minutes under ASan; the block codecs' round trips and hand-built
  # blocks do run here); the peak-RSS bound of transcribe (ASan's
  # shadow memory again); and three numerical comparisons that take 16-50 s
  # each under ASan and whose code the sanitized scheduler, language and
  # tokenizer tests (and the tokenizer fuzz target) already run: the
  # transcript at every batch size, openai's padded-spectrogram language
  # detection, and long BPE pieces against the reference merge. And the
  # micro model's oracle checks on the scalar and emulated-AMX kernel
  # tables (86 s of test time under ASan, 12-20 s each; the model code
  # runs sanitized in their AVX2 and AVX-512 variants, and those tables'
  # kernels in the Kernels, FusedOps and FlashAttention tests of every
  # ISA), which the Release run keeps for their fidelity.
  ctest --test-dir build-asan --output-on-failure -j"$jobs" \
    -E '^(RealShapes|LongForm|Clients\.|Load\.|TranscribeCli\.|PipelineCli\.|GgmlQuantFidelity\.|PeakRss\.)|BeamAndFallback|WithDefaultDecoding|^Server\.TwentyParallelClientsGetTheirOwnTranscripts$|^Pipeline\.SameTranscriptWhateverTheBatch$|^LanguageDetection\.UsesThePaddedSpectrogramLikeOpenai$|^TokenizerBpe\.LongPiecesMatchTheReference$|^Micro/Oracle(FastPath|Api)\..*/micro(_en)?_(scalar|amx_emulated)( |$)'
else
  cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
  cmake --build build -j"$jobs"
  ctest --test-dir build --output-on-failure -j"$jobs"
fi
