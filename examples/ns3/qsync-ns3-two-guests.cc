/*
 * Two QEMU guests and one ns-3 node on one ns-3 CSMA channel, in ns-3's
 * virtual time: the guests ping each other and the ns-3 node, which
 * answers with ns-3's own Internet stack. Copy it into your own script.
 *
 *   qsync-ns3-two-guests --guest=build/guests/linux-arm64 [--quantum=100us]
 *                        [--delay=500us] [--rate=100Mbps]
 */
#include <ns3/core-module.h>
#include <ns3/csma-module.h>
#include <ns3/internet-module.h>
#include <ns3/network-module.h>

#include "qsync/ns3/qemu-net-device.h"

using namespace ns3;

static int g_running = 2;

static void
GuestLine(std::string name, std::string line, Time)
{
    std::cout << name << "| " << line << std::endl;
}

static void
GuestExit(Ptr<QemuNetDevice>, int64_t status, int, Time when, std::string)
{
    std::cout << "a guest powered off at " << when.As(Time::S) << ", status " << status
              << std::endl;
    if (--g_running == 0)
    {
        Simulator::Stop();
    }
}

/* The demo guest on aarch64 virt, with its address and the command it runs. */
static std::vector<std::string>
Guest(const std::string& dir, const std::string& ip, const std::string& run)
{
    return {"qemu-system-aarch64", "-M", "virt,dtb-randomness=off", "-cpu", "cortex-a57", "-m",
            "256", "-nodefaults", "-display", "none", "-serial", "stdio", "-no-reboot", "-rtc",
            "base=2020-01-01T00:00:00,clock=vm", "-kernel", dir + "/vmlinuz", "-initrd",
            dir + "/initramfs.cpio.gz", "-append",
            "console=ttyAMA0 quiet panic=-1 qsync.ip=" + ip + "/24 qsync.run=\"" + run + "\""};
}

int
main(int argc, char** argv)
{
    std::string dir = "build/guests/linux-arm64";
    Time quantum = MicroSeconds(100);
    Time delay = MicroSeconds(500);
    std::string rate = "100Mbps";
    CommandLine cmd(__FILE__);
    cmd.AddValue("guest", "the Linux demo guest's directory (vmlinuz, initramfs.cpio.gz)", dir);
    cmd.AddValue("quantum", "the lockstep's quantum", quantum);
    cmd.AddValue("delay", "the channel's delay (at least the quantum)", delay);
    cmd.AddValue("rate", "the channel's data rate", rate);
    cmd.Parse(argc, argv);

    // The ns-3 node, 10.0.0.3, with ns-3's Internet stack, on a CSMA channel.
    Ptr<Node> host = CreateObject<Node>();
    CsmaHelper csma;
    csma.SetChannelAttribute("DataRate", StringValue(rate));
    csma.SetChannelAttribute("Delay", TimeValue(delay));
    NetDeviceContainer devs = csma.Install(host);
    InternetStackHelper().Install(host);
    Ipv4AddressHelper ip("10.0.0.0", "255.255.255.0", "0.0.0.3");
    ip.Assign(devs);
    Ptr<CsmaChannel> channel = DynamicCast<CsmaChannel>(devs.Get(0)->GetChannel());

    // Two guests, each a node of its own on the same channel. Each pings the
    // other and the ns-3 node, then stays up 2 s more for the other's pings.
    const char* names[] = {"A", "B"};
    const char* addrs[] = {"10.0.0.1", "10.0.0.2"};
    for (int i = 0; i < 2; i++)
    {
        std::string run = std::string("ping -c 2 ") + addrs[1 - i] +
                          " && ping -c 2 10.0.0.3; s=$?; sleep 2; exit $s";
        Ptr<QemuNetDevice> dev =
            QemuNetDevice::Install(CreateObject<Node>(), channel, Guest(dir, addrs[i], run));
        dev->SetAttribute("Quantum", TimeValue(quantum));
        dev->SetAttribute("EchoOutput", BooleanValue(false));
        dev->TraceConnect("GuestOutput", names[i], MakeCallback(&GuestLine));
        dev->SetExitCallback(MakeCallback(&GuestExit));
    }

    Simulator::Run();
    Simulator::Destroy(); // ends any QEMU still running
    return g_running == 0 ? 0 : 1;
}
