// OpenRDU's main() for a Verilator model run by cocotb (VPI).
//
// The evaluation loop follows the protocol cocotb's VPI layer expects (value-change
// callbacks settled after every step, ReadWrite/ReadOnly/NextSimTime/timed callbacks at
// their regions). What differs from cocotb's own main is the waveform:
//
//  * The trace is opened at the first dump point, after the first evaluation: the models
//    of Verilator hierarchical blocks (every PCU and PMU) are created by that evaluation,
//    and only models that exist when the trace is opened are traced inside.
//  * --trace-scope LEVELS:HIER (repeatable) limits the dump to those scopes, each to
//    LEVELS levels below it (Verilator's dumpvars); none = everything.
//  * --trace-from T / --trace-to T (simulation time units) dump only that window.
//
// Options: --trace, --trace-file F, --trace-scope L:H, --trace-from T, --trace-to T.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "Vtop.h"
#include "verilated.h"
#include "verilated_vpi.h"

#if VM_TRACE
#if VM_TRACE_FST
#include "verilated_fst_c.h"
using TraceFile = VerilatedFstC;
static const char* const kDefaultTrace = "dump.fst";
#else
#include "verilated_vcd_c.h"
using TraceFile = VerilatedVcdC;
static const char* const kDefaultTrace = "dump.vcd";
#endif
#else
static const char* const kDefaultTrace = "";
#endif

extern "C" void vlog_startup_routines_bootstrap(void);

static uint64_t g_now = 0;

double sc_time_stamp() { return static_cast<double>(g_now); }

namespace {

constexpr uint64_t kNever = ~0ULL;

struct TraceOptions {
    bool on = false;
    std::string file = kDefaultTrace;
    std::vector<std::pair<int, std::string>> scopes;
    uint64_t from = 0;
    uint64_t to = kNever;
};

[[noreturn]] void usage_error(const std::string& msg) {
    std::fprintf(stderr, "tb_top: %s\n", msg.c_str());
    std::exit(2);
}

uint64_t parse_time(const std::string& flag, const char* text) {
    char* end = nullptr;
    const unsigned long long v = std::strtoull(text, &end, 10);
    if (!*text || *end) usage_error(flag + " takes a time in simulation units, not '" + text + "'");
    return v;
}

TraceOptions parse_options(int argc, char** argv) {
    TraceOptions o;
    for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        const bool has_value = i + 1 < argc;
        if (a == "--trace") {
            o.on = true;
        } else if (a == "--trace-file" || a == "--trace-scope" || a == "--trace-from"
                   || a == "--trace-to") {
            if (!has_value) usage_error(a + " needs a value");
            const char* v = argv[++i];
            if (a == "--trace-file") {
                o.file = v;
            } else if (a == "--trace-from") {
                o.from = parse_time(a, v);
            } else if (a == "--trace-to") {
                o.to = parse_time(a, v);
            } else {
                const std::string s = v;
                const size_t colon = s.find(':');
                if (colon == std::string::npos || colon == 0)
                    usage_error("--trace-scope takes LEVELS:HIER, not '" + s + "'");
                o.scopes.emplace_back(std::atoi(s.substr(0, colon).c_str()), s.substr(colon + 1));
            }
        }
    }
#if !VM_TRACE
    if (o.on) usage_error("--trace needs a model built with tracing");
#endif
    if (o.from > o.to) usage_error("--trace-from is after --trace-to");
    return o;
}

void settle_value_callbacks() {
    // Value-change callbacks may write signals, which may call further callbacks.
    while (VerilatedVpi::callValueCbs()) {}
}

#if VM_TRACE
class Waveform {
  public:
    explicit Waveform(TraceOptions o) : m_opt(std::move(o)) {}

    // Called once per time step, after the step's last evaluation.
    void sample(Vtop* top, uint64_t now) {
        if (!m_opt.on || m_finished || now < m_opt.from) return;
        if (now > m_opt.to) {
            close();
            m_finished = true;
            return;
        }
        if (!m_file) {
            m_file = new TraceFile;  // never deleted: Verilator's exit callbacks hold it
            for (const auto& s : m_opt.scopes) m_file->dumpvars(s.first, s.second);
            top->trace(m_file, 99);
            m_file->open(m_opt.file.c_str());
        }
        m_file->dump(now);
    }

    void close() {
        if (m_file && m_file->isOpen()) m_file->close();
    }

  private:
    TraceOptions m_opt;
    TraceFile* m_file = nullptr;
    bool m_finished = false;
};
#else
class Waveform {
  public:
    explicit Waveform(TraceOptions) {}
    void sample(Vtop*, uint64_t) {}
    void close() {}
};
#endif

Waveform* g_wave = nullptr;

void end_of_simulation() {
    VerilatedVpi::callCbs(cbEndOfSimulation);
    if (g_wave) g_wave->close();
}

// One time step: evaluate until neither the model nor VPI writes want another pass.
void evaluate_time_step(Vtop* top) {
    do {
        do {
            top->eval_step();
            VerilatedVpi::clearEvalNeeded();
            VerilatedVpi::doInertialPuts();
            settle_value_callbacks();
        } while (VerilatedVpi::evalNeeded());
        VerilatedVpi::callCbs(cbReadWriteSynch);
        VerilatedVpi::doInertialPuts();
        settle_value_callbacks();
    } while (VerilatedVpi::evalNeeded());
    top->eval_end_step();
    VerilatedVpi::callCbs(cbReadOnlySynch);
}

}  // namespace

int main(int argc, char** argv) {
    const TraceOptions options = parse_options(argc, argv);
    Verilated::commandArgs(argc, argv);
    Verilated::traceEverOn(true);
    std::unique_ptr<Vtop> top(new Vtop(""));
    Verilated::fatalOnVpiError(false);  // cocotb's system tasks are not all known to Verilator
    Waveform wave(options);
    g_wave = &wave;

    vlog_startup_routines_bootstrap();
    Verilated::addExitCb([](void*) { end_of_simulation(); }, nullptr);
    VerilatedVpi::callCbs(cbStartOfSimulation);
    settle_value_callbacks();

    while (!Verilated::gotFinish()) {
        evaluate_time_step(top.get());
        wave.sample(top.get(), g_now);
        const uint64_t next_cb = VerilatedVpi::cbNextDeadline();
        const uint64_t next_event = top->eventsPending() ? top->nextTimeSlot() : kNever;
        const uint64_t next = next_cb < next_event ? next_cb : next_event;
        if (next == kNever) break;
        g_now = next;
        VerilatedVpi::callCbs(cbNextSimTime);
        settle_value_callbacks();
        VerilatedVpi::callTimedCbs();
        settle_value_callbacks();
    }
    top->final();
    end_of_simulation();
    g_wave = nullptr;
    return Verilated::threadContextp()->errorCount() > 0 ? 1 : 0;
}
