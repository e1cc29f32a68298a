# Draws bench-scale's data (scripts/bench.sh passes datadir and outdir).
# A plot whose data file is missing (bench-scale --only) is left as it was.
set terminal svg size 720,420 dynamic font "sans,12"
set grid
set key bottom right
set yrange [0:*]
set ylabel "lockstep / free-running -icount (net)"
have(name) = system("test -r '".datadir."/".name."' && echo 1 || echo 0") eq "1"

if (have("scale-group.dat")) {
    set output outdir."/bench-group.svg"
    set title "Cost against the number of guests in one group barrier"
    set xlabel "guests"
    set logscale x 2
    plot datadir."/scale-group.dat" using 1:2 with linespoints title "10 us quanta", \
         datadir."/scale-group.dat" using 1:3 with linespoints title "100 us quanta", \
         1 with lines dashtype 2 title "free-running"
}

if (have("scale-quantum.dat")) {
    set output outdir."/bench-quantum.svg"
    set title "Cost against the quantum, one guest"
    set xlabel "quantum (us)"
    set logscale x 10
    plot datadir."/scale-quantum.dat" using 1:2 with linespoints title "lockstep", \
         1 with lines dashtype 2 title "free-running"
}

if (have("scale-nics.dat")) {
    set output outdir."/bench-nics.svg"
    set title "Cost against the number of unused e1000 NICs, one guest"
    set xlabel "NICs"
    unset logscale x
    set xrange [0:8]
    plot datadir."/scale-nics.dat" using 1:2 with linespoints title "10 us quanta", \
         datadir."/scale-nics.dat" using 1:3 with linespoints title "100 us quanta", \
         1 with lines dashtype 2 title "free-running"
    set xrange [*:*]
}

if (have("scale-frames.dat")) {
    set output outdir."/bench-frames.svg"
    set title "Cost against the frames sent, one guest, 60-byte frames"
    set xlabel "frames per 100 us quantum"
    set logscale x 10
    plot datadir."/scale-frames.dat" using 1:2 with linespoints title "10 us quanta", \
         datadir."/scale-frames.dat" using 1:3 with linespoints title "100 us quanta", \
         1 with lines dashtype 2 title "free-running"
}
