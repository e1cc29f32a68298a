/*
 * QemuNetDevice: a QEMU guest's NIC as an ns-3 CsmaNetDevice, stepped in
 * lockstep with ns-3's simulator through libqsync (docs/ns3.md).
 *
 * One barrier (QemuLockstep) serves every device of the simulation. It is
 * an ns-3 event at T_k = k * quantum: it waits until every guest has
 * reached T_{k+1}, schedules the frames the guests sent in [T_k, T_{k+1})
 * at their exact send times, grants the guests T_{k+2} when every channel's
 * delay is at least twice the quantum (else the guests and ns-3 take
 * turns), and schedules itself at T_{k+1}. Frames toward a guest are taken
 * at the end of their transmission by the other devices (their PhyTxEnd
 * trace, where CsmaChannel::TransmitEnd has just scheduled the receptions
 * `delay` later) and given to the guest for that arrival time.
 */
#include "qsync/ns3/qemu-net-device.h"

#include <algorithm>
#include <cstring>
#include <iostream>

#include <ns3/boolean.h>
#include <ns3/drop-tail-queue.h>
#include <ns3/fatal-error.h>
#include <ns3/global-value.h>
#include <ns3/log.h>
#include <ns3/mac48-address.h>
#include <ns3/packet.h>
#include <ns3/simulator.h>
#include <ns3/string.h>

#include "qsync/qsync.h"

namespace ns3
{

NS_LOG_COMPONENT_DEFINE("QemuNetDevice");
NS_OBJECT_ENSURE_REGISTERED(QemuNetDevice);

namespace
{
constexpr size_t kFcsBytes = 4; // the EthernetTrailer CsmaNetDevice adds
constexpr size_t kEthHeader = 14;
} // namespace

struct QemuNetDevice::Guest
{
    struct Frame
    {
        uint64_t at_ns;
        std::vector<uint8_t> bytes;
    };

    QemuNetDevice* dev = nullptr;
    size_t index = 0; // registration order: the canonical order of guests
    qsync_ctx* ctx = nullptr;
    bool running = false;
    bool ended = false;
    int64_t status = 0;
    int signal = 0;
    uint64_t last_ns = 0;
    std::string tail;
    uint64_t granted_ns = 0;
    uint64_t to_ns3 = 0;
    uint64_t from_ns3 = 0;
    uint64_t dropped = 0;
    Time delay;
    std::vector<Frame> sent; // the guest's frames of the quantum being joined
    std::vector<Ptr<CsmaNetDevice>> hooked;
};

/* The one barrier of a simulation. */
class QemuLockstep
{
  public:
    static QemuLockstep& Get()
    {
        static QemuLockstep instance;
        return instance;
    }

    void Add(QemuNetDevice* dev)
    {
        dev->m_guest->index = m_next_index++;
        m_guests.push_back(dev->m_guest);
        if (!m_scheduled)
        {
            m_scheduled = true;
            Simulator::ScheduleNow(&QemuLockstep::Barrier, this);
        }
    }

    void Remove(QemuNetDevice::Guest* g)
    {
        auto it = std::find(m_guests.begin(), m_guests.end(), g);
        if (it == m_guests.end())
        {
            return;
        }
        m_guests.erase(it);
        if (m_guests.empty())
        {
            // The simulation is being destroyed: the next one starts afresh.
            Simulator::Cancel(m_event);
            *this = QemuLockstep();
        }
    }

    // Internal to this file: everything is public to its helpers.
    struct Due
    {
        uint64_t at_ns;
        size_t guest;
        size_t order;
        QemuNetDevice* dev;
        std::vector<uint8_t>* bytes;
    };

    void Start();
    bool Launch(QemuNetDevice::Guest* g);
    void Barrier();
    void Join(QemuNetDevice::Guest* g, uint64_t until_ns);
    void Grant(QemuNetDevice::Guest* g, uint64_t deadline_ns);
    static void OnTxEnd(QemuNetDevice::Guest* g, Ptr<const Packet> packet);
    static void OnFrame(qsync_ctx* ctx, unsigned nic, uint64_t virtual_ns, const void* data,
                        size_t len);
    static void OnExited(qsync_ctx* ctx, const qsync_exit* info);
    static void OnLine(qsync_ctx* ctx, const char* line, size_t len, uint64_t virtual_ns);

    std::vector<QemuNetDevice::Guest*> m_guests;
    size_t m_next_index = 0;
    bool m_scheduled = false;
    bool m_started = false;
    bool m_pipelined = false;
    uint64_t m_quantum_ns = 0;
    EventId m_event;
};

namespace
{

[[noreturn]] void
Fatal(const QemuNetDevice* dev, const std::string& what)
{
    NS_FATAL_ERROR("QemuNetDevice (node " << (dev->GetNode() ? dev->GetNode()->GetId() : 0)
                                          << ", " << Mac48Address::ConvertFrom(dev->GetAddress())
                                          << "): " << what);
    std::abort(); // NS_FATAL_ERROR does not return
}

} // namespace

void
QemuLockstep::OnFrame(qsync_ctx* ctx, unsigned nic, uint64_t virtual_ns, const void* data, size_t len)
{
    (void)nic;
    auto* g = static_cast<QemuNetDevice::Guest*>(qsync_get_data(ctx));
    const auto* p = static_cast<const uint8_t*>(data);
    g->sent.push_back({virtual_ns, std::vector<uint8_t>(p, p + len)});
}

void
QemuLockstep::OnExited(qsync_ctx* ctx, const qsync_exit* info)
{
    auto* g = static_cast<QemuNetDevice::Guest*>(qsync_get_data(ctx));
    g->status = info->exit_status;
    g->signal = info->term_signal;
    g->last_ns = info->virtual_ns;
    g->tail = info->stderr_tail ? info->stderr_tail : "";
}

void
QemuLockstep::OnLine(qsync_ctx* ctx, const char* line, size_t len, uint64_t virtual_ns)
{
    auto* g = static_cast<QemuNetDevice::Guest*>(qsync_get_data(ctx));
    std::string text(line, len);
    if (g->dev->m_echoOutput)
    {
        std::cout << text << std::endl;
    }
    g->dev->m_outputTrace(text, NanoSeconds(virtual_ns));
}

std::string
QemuNetDevice::CheckTiming(Time quantum, Time delay)
{
    if (quantum.IsStrictlyNegative() || quantum.IsZero())
    {
        return "the quantum must be positive (it is " + std::to_string(quantum.GetNanoSeconds()) +
               " ns)";
    }
    if (delay < quantum)
    {
        return "the channel's delay (" + std::to_string(delay.GetNanoSeconds()) +
               " ns) is shorter than the quantum (" + std::to_string(quantum.GetNanoSeconds()) +
               " ns): a frame sent near the end of a quantum would be due at the other devices "
               "before the quantum's frames are known to ns-3, so it could not arrive on time. "
               "Make the channel's Delay at least the quantum, or the quantum at most the delay";
    }
    return "";
}

void
QemuLockstep::Start()
{
    m_started = true;
    if (m_guests.empty())
    {
        return;
    }
    Time q = m_guests.front()->dev->m_quantum;
    m_quantum_ns = static_cast<uint64_t>(q.GetNanoSeconds());
    m_pipelined = true;
    for (auto* g : m_guests)
    {
        QemuNetDevice* dev = g->dev;
        if (dev->m_quantum != q)
        {
            Fatal(dev, "its Quantum (" + std::to_string(dev->m_quantum.GetNanoSeconds()) +
                           " ns) differs from the first QemuNetDevice's (" +
                           std::to_string(q.GetNanoSeconds()) +
                           " ns): all QEMU guests of a simulation share one quantum");
        }
        Ptr<CsmaChannel> ch = DynamicCast<CsmaChannel>(dev->GetChannel());
        if (!ch)
        {
            Fatal(dev, "it is attached to no CsmaChannel (Attach() it before Simulator::Run())");
        }
        g->delay = ch->GetDelay();
        std::string why = QemuNetDevice::CheckTiming(q, g->delay);
        if (!why.empty())
        {
            Fatal(dev, why);
        }
        if (g->delay.GetNanoSeconds() < 2 * q.GetNanoSeconds())
        {
            m_pipelined = false;
        }
        if (dev->m_argv.empty())
        {
            Fatal(dev, "it has no QEMU command line (SetQemuCommand() before Simulator::Run())");
        }

        if (!Launch(g))
        {
            continue;
        }
        g->running = true;
        // Every other device on the channel: what it finishes sending reaches
        // the guest `delay` later.
        for (size_t i = 0; i < ch->GetNDevices(); i++)
        {
            Ptr<CsmaNetDevice> other = ch->GetCsmaDevice(i);
            if (PeekPointer(other) == dev)
            {
                continue;
            }
            other->TraceConnectWithoutContext("PhyTxEnd",
                                              MakeBoundCallback(&QemuLockstep::OnTxEnd, g));
            g->hooked.push_back(other);
        }
    }
    NS_LOG_INFO("QEMU guests: " << m_guests.size() << ", quantum " << m_quantum_ns << " ns, "
                                << (m_pipelined ? "pipelined" : "taking turns"));
}

/* Guest g's context, its NIC and its QEMU. Returns whether QEMU started;
 * when it did not, the exit callback has been told (without one, that is
 * an ns-3 fatal error). */
bool
QemuLockstep::Launch(QemuNetDevice::Guest* g)
{
    QemuNetDevice* dev = g->dev;
    qsync_options opts;
    qsync_options_init(&opts);
    opts.stdout_mode = QSYNC_OUTPUT_LINES;
    opts.quantum_hint_ns = m_quantum_ns;
    qsync_callbacks cbs;
    qsync_callbacks_init(&cbs);
    cbs.frame = OnFrame;
    cbs.exited = OnExited;
    cbs.output_line = OnLine;
    char err[256] = "";
    int rc = qsync_ctx_new(nullptr, &opts, &cbs, &g->ctx, err, sizeof err);
    if (rc < 0)
    {
        Fatal(dev, std::string("qsync_ctx_new: ") + qsync_strerror(rc) + " " + err);
    }
    qsync_set_data(g->ctx, g);
    qsync_nic_config nic;
    qsync_nic_config_init(&nic);
    nic.model = dev->m_model.c_str();
    nic.has_mac = 1;
    Mac48Address::ConvertFrom(dev->GetAddress()).CopyTo(nic.mac);
    rc = qsync_nic_add(g->ctx, &nic);
    if (rc < 0)
    {
        Fatal(dev, std::string("qsync_nic_add: ") + qsync_last_error(g->ctx));
    }
    std::vector<const char*> argv;
    for (const auto& a : dev->m_argv)
    {
        argv.push_back(a.c_str());
    }
    argv.push_back(nullptr);
    rc = qsync_start(g->ctx, argv.data());
    if (rc < 0 && dev->m_exitCb.IsNull())
    {
        Fatal(dev, std::string("cannot start QEMU: ") + qsync_last_error(g->ctx));
    }
    if (rc < 0)
    {
        // Told to the exit callback as a guest that never ran: status
        // -1 with no signal, the library's message as the tail.
        g->ended = true;
        g->status = -1;
        g->signal = 0;
        g->tail = qsync_last_error(g->ctx);
        dev->m_exitCb(Ptr<QemuNetDevice>(dev), g->status, 0, Seconds(0), g->tail);
        return false;
    }
    return true;
}

void
QemuLockstep::OnTxEnd(QemuNetDevice::Guest* g, Ptr<const Packet> packet)
{
    if (!g->running)
    {
        return;
    }
    uint32_t size = packet->GetSize();
    if (size < kEthHeader + kFcsBytes)
    {
        return;
    }
    std::vector<uint8_t> bytes(size);
    packet->CopyData(bytes.data(), size);
    uint64_t at = static_cast<uint64_t>((Simulator::Now() + g->delay).GetNanoSeconds());
    int rc = qsync_send_frame(g->ctx, 0, at, bytes.data(), size - kFcsBytes);
    if (rc < 0)
    {
        Fatal(g->dev, std::string("cannot give the guest a frame due at ") + std::to_string(at) +
                          " ns: " + qsync_last_error(g->ctx));
    }
    g->from_ns3++;
}

void
QemuLockstep::Grant(QemuNetDevice::Guest* g, uint64_t deadline_ns)
{
    int rc = qsync_advance_to_ns(g->ctx, deadline_ns);
    if (rc < 0 && rc != QSYNC_EEXITED)
    {
        Fatal(g->dev, std::string("cannot grant the guest ") + std::to_string(deadline_ns) +
                          " ns: " + qsync_last_error(g->ctx));
    }
    g->granted_ns = deadline_ns;
}

void
QemuLockstep::Join(QemuNetDevice::Guest* g, uint64_t until_ns)
{
    if (g->granted_ns < until_ns)
    {
        Grant(g, until_ns);
    }
    qsync_stop stop;
    int rc = qsync_wait_reached(g->ctx, &stop);
    if (rc == 0)
    {
        return;
    }
    if (rc != QSYNC_EEXITED)
    {
        Fatal(g->dev, std::string("the guest failed: ") + qsync_last_error(g->ctx));
    }
    g->running = false;
    g->ended = true;
}

void
QemuLockstep::Barrier()
{
    if (!m_started)
    {
        Start();
    }
    uint64_t now = static_cast<uint64_t>(Simulator::Now().GetNanoSeconds());
    uint64_t next = now + m_quantum_ns;
    // 1. Every guest reaches T_{k+1}.
    std::vector<QemuNetDevice::Guest*> exited;
    for (auto* g : m_guests)
    {
        if (g->running)
        {
            Join(g, next);
            if (g->ended)
            {
                exited.push_back(g);
            }
        }
    }
    // 2. Their frames enter ns-3 at their send times, in one canonical order:
    // time, then guest, then the order the guest sent them in.
    std::vector<Due> due;
    for (auto* g : m_guests)
    {
        for (size_t i = 0; i < g->sent.size(); i++)
        {
            due.push_back({g->sent[i].at_ns, g->index, i, g->dev, &g->sent[i].bytes});
        }
    }
    std::sort(due.begin(), due.end(), [](const Due& a, const Due& b) {
        if (a.at_ns != b.at_ns)
        {
            return a.at_ns < b.at_ns;
        }
        if (a.guest != b.guest)
        {
            return a.guest < b.guest;
        }
        return a.order < b.order;
    });
    for (const auto& d : due)
    {
        uint64_t at = std::max(d.at_ns, now);
        Simulator::Schedule(NanoSeconds(at - now), &QemuNetDevice::SendGuestFrame,
                            Ptr<QemuNetDevice>(d.dev), *d.bytes);
    }
    for (auto* g : m_guests)
    {
        g->sent.clear();
    }
    // 3. Pipelined: the guests run [T_{k+1}, T_{k+2}) while ns-3 runs
    // [T_k, T_{k+1}). Otherwise they run it at the next barrier.
    bool any = false;
    for (auto* g : m_guests)
    {
        if (g->running)
        {
            any = true;
            if (m_pipelined)
            {
                Grant(g, next + m_quantum_ns);
            }
        }
    }
    // 4. The next barrier, unless no guest is left.
    if (any)
    {
        m_event = Simulator::Schedule(NanoSeconds(m_quantum_ns), &QemuLockstep::Barrier, this);
    }
    for (auto* g : exited)
    {
        QemuNetDevice* dev = g->dev;
        if (!dev->m_exitCb.IsNull())
        {
            dev->m_exitCb(Ptr<QemuNetDevice>(dev), g->status, g->signal, NanoSeconds(g->last_ns),
                          g->tail);
        }
        else if (g->status != 0)
        {
            std::string how = g->signal ? "was killed by signal " + std::to_string(g->signal)
                                        : "exited with status " + std::to_string(g->status);
            Fatal(dev, "the QEMU guest " + how + " at " + std::to_string(g->last_ns) +
                           " ns of virtual time; QEMU's stderr ends with: " + g->tail);
        }
    }
}

TypeId
QemuNetDevice::GetTypeId()
{
    static TypeId tid =
        TypeId("ns3::QemuNetDevice")
            .SetParent<CsmaNetDevice>()
            .SetGroupName("Csma")
            .AddConstructor<QemuNetDevice>()
            .AddAttribute("Quantum",
                          "The lockstep's quantum: every QemuNetDevice of a simulation has the "
                          "same, and every channel's delay is at least this",
                          TimeValue(MicroSeconds(10)),
                          MakeTimeAccessor(&QemuNetDevice::m_quantum),
                          MakeTimeChecker())
            .AddAttribute("Model",
                          "The guest's NIC: e1000 or virtio",
                          StringValue("e1000"),
                          MakeStringAccessor(&QemuNetDevice::m_model),
                          MakeStringChecker())
            .AddAttribute("EchoOutput",
                          "Print the guest's serial output on standard output, line by line",
                          BooleanValue(true),
                          MakeBooleanAccessor(&QemuNetDevice::m_echoOutput),
                          MakeBooleanChecker())
            .AddTraceSource("GuestOutput",
                            "A line of the guest's serial output, with the virtual time of the "
                            "stop that ended the quantum it was completed in",
                            MakeTraceSourceAccessor(&QemuNetDevice::m_outputTrace),
                            "ns3::QemuNetDevice::OutputTracedCallback");
    return tid;
}

QemuNetDevice::QemuNetDevice()
    : m_guest(new Guest),
      m_quantum(MicroSeconds(10)),
      m_model("e1000"),
      m_echoOutput(true)
{
    m_guest->dev = this;
    // A real guest drops IP packets whose checksums are wrong, and ns-3
    // leaves them 0 unless checksums are on.
    GlobalValue::Bind("ChecksumEnabled", BooleanValue(true));
    SetQueue(CreateObject<DropTailQueue<Packet>>());
}

QemuNetDevice::~QemuNetDevice()
{
    // Normally DoDispose() has done this; a device freed without it still
    // ends its QEMU and leaves the barrier.
    if (m_guest->ctx)
    {
        qsync_close_wait(m_guest->ctx);
    }
    QemuLockstep::Get().Remove(m_guest);
    delete m_guest;
}

Ptr<QemuNetDevice>
QemuNetDevice::Install(Ptr<Node> node, Ptr<CsmaChannel> channel,
                       const std::vector<std::string>& qemuArgv)
{
    Ptr<QemuNetDevice> dev = CreateObject<QemuNetDevice>();
    dev->SetAddress(Mac48Address::Allocate());
    node->AddDevice(dev);
    dev->Attach(channel);
    dev->SetQemuCommand(qemuArgv);
    return dev;
}

void
QemuNetDevice::SetQemuCommand(const std::vector<std::string>& argv)
{
    m_argv = argv;
}

void
QemuNetDevice::SetExitCallback(ExitCallback cb)
{
    m_exitCb = cb;
}

bool
QemuNetDevice::IsGuestRunning() const
{
    return m_guest->running;
}

int64_t
QemuNetDevice::GetGuestExitStatus() const
{
    return m_guest->status;
}

uint64_t
QemuNetDevice::GetFramesToNs3() const
{
    return m_guest->to_ns3;
}

uint64_t
QemuNetDevice::GetFramesFromNs3() const
{
    return m_guest->from_ns3;
}

uint64_t
QemuNetDevice::GetFramesDropped() const
{
    return m_guest->dropped;
}

void
QemuNetDevice::SendGuestFrame(std::vector<uint8_t> bytes)
{
    // dst(6) src(6) type(2) payload: CsmaNetDevice rebuilds the same header
    // (and pads to 46 bytes of payload, which e1000 has done already).
    uint16_t type = static_cast<uint16_t>(bytes[12] << 8 | bytes[13]);
    if (bytes.size() < kEthHeader || type <= 1500)
    {
        m_guest->dropped++;
        return;
    }
    Mac48Address dst;
    Mac48Address src;
    dst.CopyFrom(bytes.data());
    src.CopyFrom(bytes.data() + 6);
    Ptr<Packet> p = Create<Packet>(bytes.data() + kEthHeader, bytes.size() - kEthHeader);
    if (CsmaNetDevice::SendFrom(p, src, dst, type))
    {
        m_guest->to_ns3++;
    }
    else
    {
        m_guest->dropped++;
    }
}

void
QemuNetDevice::DoInitialize()
{
    QemuLockstep::Get().Add(this);
    CsmaNetDevice::DoInitialize();
}

void
QemuNetDevice::DoDispose()
{
    Guest* g = m_guest;
    for (auto& other : g->hooked)
    {
        other->TraceDisconnectWithoutContext("PhyTxEnd",
                                             MakeBoundCallback(&QemuLockstep::OnTxEnd, g));
    }
    g->hooked.clear();
    if (g->ctx)
    {
        qsync_close_wait(g->ctx); // ends QEMU if it still runs
        g->ctx = nullptr;
    }
    g->running = false;
    QemuLockstep::Get().Remove(g);
    m_exitCb = MakeNullCallback<void, Ptr<QemuNetDevice>, int64_t, int, Time, std::string>();
    CsmaNetDevice::DoDispose();
}

} // namespace ns3

