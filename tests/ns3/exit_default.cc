/*
 * A QemuNetDevice without an exit callback whose QEMU exits with status 1
 * (its kernel does not exist): the simulation must stop with an ns-3 fatal
 * error naming the status and QEMU's own message. Prints "returned" and
 * exits 0 if Simulator::Run() came back instead.
 * usage: ns3-exit-default QEMU MISSING_KERNEL
 */
#include <iostream>

#include <ns3/core-module.h>
#include <ns3/csma-module.h>
#include <ns3/network-module.h>

#include "qsync/ns3/qemu-net-device.h"

using namespace ns3;

int
main(int argc, char** argv)
{
    if (argc != 3)
    {
        std::cerr << "usage: ns3-exit-default QEMU MISSING_KERNEL" << std::endl;
        return 2;
    }
    Ptr<Node> peer = CreateObject<Node>();
    CsmaHelper csma;
    csma.SetChannelAttribute("Delay", TimeValue(MicroSeconds(500)));
    NetDeviceContainer devs = csma.Install(peer);
    Ptr<CsmaChannel> channel = DynamicCast<CsmaChannel>(devs.Get(0)->GetChannel());
    Ptr<QemuNetDevice> dev = QemuNetDevice::Install(
        CreateObject<Node>(), channel,
        {argv[1], "-M", "virt", "-nodefaults", "-display", "none", "-kernel", argv[2]});
    dev->SetAttribute("Quantum", TimeValue(MicroSeconds(100)));
    Simulator::Stop(Seconds(1));
    Simulator::Run();
    Simulator::Destroy();
    std::cout << "returned" << std::endl;
    return 0;
}
