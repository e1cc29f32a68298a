/*
 * libqsync-ns3: a stock-QEMU guest as a node of an ns-3 network, in ns-3's
 * virtual time (docs/ns3.md).
 *
 * QemuNetDevice is a CsmaNetDevice that stands for a QEMU guest's NIC. Put
 * it on a node of its own (no Internet stack: the guest has its own) and on
 * a CsmaChannel, give it the QEMU command line, and run ns-3's default
 * simulator: the guest then runs in lockstep with ns-3, in quanta that are
 * ns-3 events, and every frame crosses the channel at its exact virtual
 * time, in both directions.
 *
 *   Ptr<QemuNetDevice> dev = QemuNetDevice::Install(node, channel,
 *       {"qemu-system-aarch64", "-M", "virt", ..., "-kernel", "vmlinuz"});
 *   ...
 *   Simulator::Run();
 *   Simulator::Destroy(); // ends every QEMU
 *
 * Every QemuNetDevice of a simulation shares one quantum (the attribute
 * "Quantum", the same on all of them) and one barrier. The delay of each
 * device's channel is the lookahead: it must be at least the quantum (a
 * shorter one is refused with an ns-3 fatal error saying why); from twice
 * the quantum on, QEMU runs a quantum ahead of ns-3, in parallel with it.
 * Devices must exist before Simulator::Run(). The guest's exit is reported
 * to the exit callback; without one, an exit with a status other than 0 (a
 * crash, a kill) is an ns-3 fatal error. No QEMU outlives the simulation:
 * Simulator::Destroy() ends them, and a process that dies takes them along.
 */
#ifndef QSYNC_NS3_QEMU_NET_DEVICE_H
#define QSYNC_NS3_QEMU_NET_DEVICE_H

#include <cstdint>
#include <string>
#include <vector>

#include <ns3/callback.h>
#include <ns3/csma-channel.h>
#include <ns3/csma-net-device.h>
#include <ns3/node.h>
#include <ns3/nstime.h>
#include <ns3/traced-callback.h>

namespace ns3
{

class QemuNetDevice : public CsmaNetDevice
{
  public:
    static TypeId GetTypeId();

    QemuNetDevice();
    ~QemuNetDevice() override;

    /* Creates a device with a fresh MAC address and a drop-tail queue, adds
     * it to node, attaches it to channel and sets the QEMU command line. */
    static Ptr<QemuNetDevice> Install(Ptr<Node> node, Ptr<CsmaChannel> channel,
                                      const std::vector<std::string>& qemuArgv);

    /* The QEMU command line: argv[0] the binary (searched in PATH), then the
     * guest's arguments, with no -netdev/-nic for this NIC and no -icount:
     * the library adds them. Never passed through a shell. Before
     * Simulator::Run(). */
    void SetQemuCommand(const std::vector<std::string>& argv);

    /* How the guest ended: status is QEMU's exit status (-1 when a signal
     * ended it, then signal is that signal); when is the virtual time of
     * the guest's last stop; stderrTail the end of QEMU's stderr. A QEMU
     * that could not be started at all (no such binary, no plugin...) is
     * reported here too, at the first barrier: status -1, signal 0, when
     * 0, and stderrTail the library's message saying why. Without a
     * callback, that and an exit with a status other than 0 are ns-3 fatal
     * errors. */
    typedef Callback<void, Ptr<QemuNetDevice>, int64_t /* status */, int /* signal */,
                     Time /* when */, std::string /* stderrTail */>
        ExitCallback;
    void SetExitCallback(ExitCallback cb);

    /* Whether the guest runs: from its start (the first barrier, at time
     * 0) until its exit. */
    bool IsGuestRunning() const;
    /* QEMU's exit status (-1 for a signal); valid once the guest ended. */
    int64_t GetGuestExitStatus() const;

    /* Frames the guest sent that entered the ns-3 channel, and frames of
     * other devices given to the guest. */
    uint64_t GetFramesToNs3() const;
    uint64_t GetFramesFromNs3() const;
    /* Frames the guest sent that ns-3's CSMA device cannot carry (an
     * 802.3 length instead of an EtherType); dropped. */
    uint64_t GetFramesDropped() const;

    /* Checks a quantum against a channel delay; returns "" when the pair
     * can run exactly, else why not (the message the fatal error gives). */
    static std::string CheckTiming(Time quantum, Time delay);

    /* The signature of the trace source "GuestOutput". */
    typedef void (*OutputTracedCallback)(std::string line, Time when);

  protected:
    void DoInitialize() override;
    void DoDispose() override;

  private:
    friend class QemuLockstep;
    struct Guest;
    void SendGuestFrame(std::vector<uint8_t> bytes);
    Guest* m_guest;
    std::vector<std::string> m_argv;
    Time m_quantum;
    std::string m_model;
    bool m_echoOutput;
    ExitCallback m_exitCb;
    TracedCallback<std::string, Time> m_outputTrace;
};

} // namespace ns3

#endif
