/*
 * qsync-ns3: a QEMU guest and an ns-3 node on one ns-3 CSMA channel, in
 * ns-3's virtual time (docs/ns3.md). The ns-3 node (ns-3's own Internet
 * stack, 10.0.0.2/24) pings the guest (which gives itself 10.0.0.1) with
 * ns-3's V4Ping once the guest says its network is up, and prints each
 * reply's sequence number and round-trip time in ns.
 *
 * usage: qsync-ns3 [--quantum DUR] [--delay DUR] [--rate RATE] [--pings N]
 *                  [--json FILE] -- QEMU-ARGV
 */
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <string>
#include <vector>

#include <ns3/core-module.h>
#include <ns3/csma-module.h>
#include <ns3/internet-apps-module.h>
#include <ns3/internet-module.h>
#include <ns3/network-module.h>

#include "qsync/ns3/qemu-net-device.h"

extern "C" {
#include "duration.h"
}

using namespace ns3;

namespace
{

/* ns-3's pings go out this often, so that N of them fit in the time the
 * guest's own `ping -c 3` keeps it up. */
const Time kPingInterval = MilliSeconds(100);

// A bad command line, and a --json file that cannot be written.
const int kExitUsage = 2;

/* The command line, once parsed and checked. */
struct Options
{
    Time quantum = MicroSeconds(10);
    Time delay = MicroSeconds(500);
    std::string rate_text = "100Mbps";
    DataRate rate; // rate_text's value, set by CheckOptions
    uint32_t pings = 3;
    const char* json = nullptr;
    std::vector<std::string> qemu;
};

/* The run's state. ns-3 calls the trace sinks and the events below as
 * plain functions, so they find it here. */
struct Run
{
    uint32_t pings = 0; // --pings
    std::vector<int64_t> rtts;
    int last_seq = -1;
    bool ping_started = false;
    bool pings_done = false;
    bool guest_ended = false;
    bool guest_never_ran = false; // QEMU could not be started
    int64_t guest_status = 0;
    Ptr<Node> node;
    // The figures of the report, read at the simulation's end.
    int64_t virtual_ns = 0;
    uint64_t frames_to_ns3 = 0;
    uint64_t frames_from_ns3 = 0;
};

Run run;

void
Usage(FILE* f)
{
    std::fprintf(f, "usage: qsync-ns3 [--quantum DUR] [--delay DUR] [--rate RATE] [--pings N]\n"
                    "                 [--json FILE] -- QEMU-ARGV\n"
                    "  --quantum DUR  the lockstep's quantum (default 10us)\n"
                    "  --delay DUR    the CSMA channel's delay, at least the quantum (default 500us)\n"
                    "  --rate RATE    the CSMA channel's data rate (default 100Mbps)\n"
                    "  --pings N      ns-3's pings to the guest (10.0.0.1), 0 to 1000 (default 3)\n"
                    "  --json FILE    write the run's figures there\n");
}

void
MaybeStop()
{
    if (run.guest_ended && (run.pings_done || !run.ping_started))
    {
        Simulator::Stop();
    }
}

void
PingsDone()
{
    run.pings_done = true;
    MaybeStop();
}

/* The ns-3 node's device received a frame: note the sequence number of an
 * ICMP echo reply, which V4Ping's Rtt trace then reports. */
void
OnNodeRx(Ptr<const Packet> packet)
{
    uint8_t b[64];
    uint32_t n = packet->CopyData(b, sizeof b);
    if (n < 14 + 20 + 8 || b[12] != 0x08 || b[13] != 0x00)
    {
        return;
    }
    size_t ihl = (b[14] & 0x0f) * 4u;
    if (b[14 + 9] != 1 || 14 + ihl + 8 > n || b[14 + ihl] != 0) // ICMP echo reply
    {
        return;
    }
    run.last_seq = b[14 + ihl + 6] << 8 | b[14 + ihl + 7];
}

void
OnRtt(Time rtt)
{
    run.rtts.push_back(rtt.GetNanoSeconds());
    std::cout << "ns-3 ping: seq=" << run.last_seq << " rtt_ns=" << rtt.GetNanoSeconds()
              << std::endl;
}

void
StartPings()
{
    if (run.pings == 0)
    {
        run.pings_done = true;
        return;
    }
    Ptr<V4Ping> ping = CreateObject<V4Ping>();
    ping->SetAttribute("Remote", Ipv4AddressValue("10.0.0.1"));
    ping->SetAttribute("Interval", TimeValue(kPingInterval));
    ping->SetStartTime(Seconds(0));
    // N requests, the last one's reply included.
    Time stop = kPingInterval * run.pings;
    ping->SetStopTime(stop);
    ping->TraceConnectWithoutContext("Rtt", MakeCallback(&OnRtt));
    run.node->AddApplication(ping);
    Simulator::Schedule(stop + NanoSeconds(1), &PingsDone);
}

/* The guest's "net up" line starts the pings at the first whole
 * millisecond after the line's stamp: a stop time, a multiple of the
 * quantum, so the start is the same at every quantum that divides 1 ms,
 * and so is everything after it (the tests compare 10 us with 100 us). */
void
OnGuestLine(std::string line, Time when)
{
    if (!run.ping_started && line.rfind("qsync-linux: net up", 0) == 0)
    {
        run.ping_started = true;
        int64_t ms = 1000000;
        int64_t start = (when.GetNanoSeconds() / ms + 1) * ms;
        Simulator::Schedule(NanoSeconds(start) - Simulator::Now(), &StartPings);
    }
}

void
OnGuestExit(Ptr<QemuNetDevice> dev, int64_t status, int signal, Time when, std::string tail)
{
    (void)dev;
    run.guest_ended = true;
    run.guest_status = status;
    if (status == -1 && signal == 0)
    {
        run.guest_never_ran = true;
        std::cerr << "qsync-ns3: cannot start QEMU: " << tail << std::endl;
    }
    else if (status != 0)
    {
        std::cerr << "qsync-ns3: the guest " << (signal ? "was killed by signal " : "exited with ")
                  << (signal ? signal : status) << " at " << when.GetNanoSeconds()
                  << " ns; QEMU's stderr ends with: " << tail << std::endl;
    }
    MaybeStop();
}

bool
ParseDuration(const char* flag, const char* text, Time* out)
{
    uint64_t ns = 0;
    char err[128];
    if (qsync__parse_duration(text, &ns, err, sizeof err) < 0)
    {
        std::fprintf(stderr, "qsync-ns3: %s %s: %s\n", flag, text, err);
        return false;
    }
    *out = NanoSeconds(static_cast<int64_t>(ns));
    return true;
}

std::string
TimeText(Time t)
{
    return std::to_string(t.GetNanoSeconds()) + " ns";
}

bool
ParsePings(const char* text, uint32_t* out)
{
    char* end = nullptr;
    errno = 0;
    unsigned long n = std::strtoul(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || n > 1000)
    {
        std::fprintf(stderr, "qsync-ns3: --pings %s: not a count from 0 to 1000\n", text);
        return false;
    }
    *out = static_cast<uint32_t>(n);
    return true;
}

/* Whether flag is one that takes a value (the only kind there is). */
bool
KnownFlag(const std::string& flag)
{
    return flag == "--quantum" || flag == "--delay" || flag == "--rate" || flag == "--pings" ||
           flag == "--json";
}

/* One flag (KnownFlag) and its value; false (said why) for a bad value. */
bool
ParseFlag(const std::string& flag, const char* value, Options* o)
{
    if (flag == "--quantum")
    {
        return ParseDuration("--quantum", value, &o->quantum);
    }
    if (flag == "--delay")
    {
        return ParseDuration("--delay", value, &o->delay);
    }
    if (flag == "--rate")
    {
        o->rate_text = value;
        return true;
    }
    if (flag == "--pings")
    {
        return ParsePings(value, &o->pings);
    }
    o->json = value; /* --json */
    return true;
}

/* The flags, then the QEMU command line after "--"; returns 0 to go on, or
 * the exit code (-1 for a clean exit 0, after --help). */
int
ParseCommandLine(int argc, char** argv, Options* o)
{
    int i = 1;
    for (; i < argc; i++)
    {
        std::string a = argv[i];
        if (a == "--")
        {
            i++;
            break;
        }
        if (a == "--help" || a == "-h")
        {
            Usage(stdout);
            return -1;
        }
        if (!KnownFlag(a))
        {
            std::fprintf(stderr, "qsync-ns3: unknown option %s\n", argv[i]);
            Usage(stderr);
            return kExitUsage;
        }
        if (i + 1 >= argc)
        {
            std::fprintf(stderr, "qsync-ns3: %s needs a value\n", argv[i]);
            Usage(stderr);
            return kExitUsage;
        }
        if (!ParseFlag(a, argv[++i], o))
        {
            return kExitUsage;
        }
    }
    if (i >= argc)
    {
        std::fprintf(stderr, "qsync-ns3: no QEMU command line after --\n");
        Usage(stderr);
        return kExitUsage;
    }
    o->qemu.assign(argv + i, argv + argc);
    return 0;
}

/* RATE as a DataRate. DataRate's own parser aborts on bad text: the form
 * is checked first. */
bool
ParseRate(const std::string& text, DataRate* out)
{
    size_t digits = text.find_first_not_of("0123456789.");
    std::string unit = digits == std::string::npos ? "" : text.substr(digits);
    static const char* units[] = {"bps", "b/s", "Bps", "B/s", "kbps", "kb/s", "Kbps",
                                  "Kb/s", "kBps", "kB/s", "KBps", "KB/s", "Mbps", "Mb/s",
                                  "MBps", "MB/s", "Gbps", "Gb/s", "GBps", "GB/s"};
    bool ok = digits != 0 && digits != std::string::npos;
    bool known = false;
    for (const char* u : units)
    {
        known = known || unit == u;
    }
    if (!ok || !known)
    {
        std::fprintf(stderr,
                     "qsync-ns3: --rate %s: not a data rate (a number and a unit such as "
                     "100Mbps, 1Gbps, 64kbps)\n",
                     text.c_str());
        return false;
    }
    *out = DataRate(text);
    if (out->GetBitRate() == 0)
    {
        std::fprintf(stderr, "qsync-ns3: --rate %s: the rate must be positive\n", text.c_str());
        return false;
    }
    return true;
}

/* The flags' values, checked once all are parsed. A delay shorter than the
 * quantum is refused here, before QEMU starts, rather than by the library
 * at its first barrier with an ns-3 fatal error. Returns 0, or the exit
 * code. */
int
CheckOptions(Options* o)
{
    std::string why = QemuNetDevice::CheckTiming(o->quantum, o->delay);
    if (!why.empty())
    {
        std::fprintf(stderr, "qsync-ns3: --delay %s and --quantum %s: %s\n",
                     TimeText(o->delay).c_str(), TimeText(o->quantum).c_str(), why.c_str());
        return kExitUsage;
    }
    return ParseRate(o->rate_text, &o->rate) ? 0 : kExitUsage;
}

/* The ns-3 node (ns-3's Internet stack, 10.0.0.2/24) and the guest on one
 * CSMA channel; returns the guest's device. */
Ptr<QemuNetDevice>
BuildTopology(const Options& o)
{
    NodeContainer nodes;
    nodes.Create(2);
    run.node = nodes.Get(0);
    CsmaHelper csma;
    csma.SetChannelAttribute("DataRate", DataRateValue(o.rate));
    csma.SetChannelAttribute("Delay", TimeValue(o.delay));
    NetDeviceContainer devs = csma.Install(nodes.Get(0));
    Ptr<CsmaChannel> channel = DynamicCast<CsmaChannel>(devs.Get(0)->GetChannel());
    InternetStackHelper stack;
    stack.Install(nodes.Get(0));
    Ipv4AddressHelper ip;
    ip.SetBase("10.0.0.0", "255.255.255.0", "0.0.0.2");
    ip.Assign(devs);
    devs.Get(0)->TraceConnectWithoutContext("MacRx", MakeCallback(&OnNodeRx));

    Ptr<QemuNetDevice> guest = QemuNetDevice::Install(nodes.Get(1), channel, o.qemu);
    guest->SetAttribute("Quantum", TimeValue(o.quantum));
    guest->TraceConnectWithoutContext("GuestOutput", MakeCallback(&OnGuestLine));
    guest->SetExitCallback(MakeCallback(&OnGuestExit));
    return guest;
}

/* Runs the simulation until MaybeStop ends it. The figures are read
 * before Simulator::Destroy(), which disposes the devices and the clock. */
void
RunSimulation(Ptr<QemuNetDevice> guest)
{
    Simulator::Run();
    run.virtual_ns = Simulator::Now().GetNanoSeconds();
    run.frames_to_ns3 = guest->GetFramesToNs3();
    run.frames_from_ns3 = guest->GetFramesFromNs3();
    Simulator::Destroy();
}

bool
WriteJson(const char* path)
{
    FILE* f = std::fopen(path, "w");
    if (!f)
    {
        std::fprintf(stderr, "qsync-ns3: --json %s: %s\n", path, std::strerror(errno));
        return false;
    }
    std::fprintf(f, "{\n  \"ns3_rtt_ns\": [");
    for (size_t k = 0; k < run.rtts.size(); k++)
    {
        std::fprintf(f, "%s%" PRId64, k ? ", " : "", run.rtts[k]);
    }
    std::fprintf(f,
                 "],\n  \"virtual_ns\": %" PRId64 ",\n  \"guest_exit_status\": %" PRId64
                 ",\n  \"frames_to_ns3\": %" PRIu64 ",\n  \"frames_from_ns3\": %" PRIu64
                 "\n}\n",
                 run.virtual_ns, run.guest_status, run.frames_to_ns3, run.frames_from_ns3);
    if (std::fclose(f) != 0)
    {
        std::fprintf(stderr, "qsync-ns3: --json %s: %s\n", path, std::strerror(errno));
        return false;
    }
    return true;
}

/* What went wrong, the summary line and the --json file; returns the exit
 * code: 0 when the guest powered off with 0 and every ping was answered,
 * 1 otherwise, kExitUsage when QEMU could not be started or the --json
 * file cannot be written. */
int
Report(const char* json)
{
    int rc = 0;
    if (run.guest_never_ran)
    {
        rc = kExitUsage; // nothing ran: the command line is at fault
    }
    else if (!run.guest_ended)
    {
        std::fprintf(stderr, "qsync-ns3: the simulation ended with the guest still running\n");
        rc = 1;
    }
    else if (run.guest_status != 0)
    {
        rc = 1;
    }
    if (run.guest_never_ran)
    {
        // Said already; no pings could be sent.
    }
    else if (!run.ping_started && run.pings > 0)
    {
        std::fprintf(stderr, "qsync-ns3: the guest powered off before it said "
                             "\"qsync-linux: net up\": no pings were sent\n");
        rc = 1;
    }
    else if (run.rtts.size() != run.pings)
    {
        std::fprintf(stderr, "qsync-ns3: %zu of %u pings answered\n", run.rtts.size(), run.pings);
        rc = 1;
    }
    std::printf("qsync-ns3: %zu of %u pings answered, virtual time %" PRId64
                " ns, frames to ns-3 %" PRIu64 ", from ns-3 %" PRIu64 "\n",
                run.rtts.size(), run.pings, run.virtual_ns, run.frames_to_ns3,
                run.frames_from_ns3);
    if (json && !WriteJson(json))
    {
        return kExitUsage;
    }
    return rc;
}

} // namespace

int
main(int argc, char** argv)
{
    Options options;
    int rc = ParseCommandLine(argc, argv, &options);
    if (rc == 0)
    {
        rc = CheckOptions(&options);
    }
    if (rc)
    {
        return rc < 0 ? 0 : rc;
    }
    run.pings = options.pings;
    Ptr<QemuNetDevice> guest = BuildTopology(options);
    RunSimulation(guest);
    return Report(options.json);
}
