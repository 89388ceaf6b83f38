package main

import (
	"fmt"
	"image/color"
	"os"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// drawScaleChart draws two panels: the aggregate throughput of each
// workload by number of hosts beside what the links can carry, and the
// scaling efficiency with the goal.
func (s *scaleSuite) drawScaleChart(path string) error {
	big, small := s.rows(s.big), s.rows(s.small)
	grey := color.RGBA{R: 0x99, G: 0x99, B: 0x99, A: 0xff}
	blue := groupColors[groupFleet]
	orange := groupColors[groupPeer]

	tp := plot.New()
	tp.Title.Text = fmt.Sprintf("aggregate throughput, %d Mbit/s per host", s.opt.rateMbit)
	tp.X.Label.Text = "worker hosts"
	tp.Y.Label.Text = "MB/s (median of the runs)"
	tp.Y.Min = 0
	var ideal plotter.XYs
	for _, n := range s.opt.hosts {
		ideal = append(ideal, plotter.XY{X: float64(n), Y: float64(n) * goodput(s.opt.rateMbit) / 1e6})
	}
	if err := addLine(tp, ideal, grey, true, "links' payload capacity"); err != nil {
		return err
	}
	eff := plot.New()
	eff.Title.Text = "scaling efficiency t1 / (n·tn)"
	eff.X.Label.Text = "worker hosts"
	eff.Y.Min, eff.Y.Max = 0, 1.1
	goal := plotter.XYs{{X: float64(s.opt.hosts[0]), Y: 0.9}, {X: float64(s.opt.maxHosts()), Y: 0.9}}
	if err := addLine(eff, goal, grey, true, "goal 0.9"); err != nil {
		return err
	}
	for _, w := range []struct {
		rows []scaleRow
		c    color.Color
	}{{big, blue}, {small, orange}} {
		var mb, e plotter.XYs
		effs := efficiency(w.rows)
		for i, r := range w.rows {
			if len(r.ok) == 0 {
				continue
			}
			mb = append(mb, plotter.XY{X: float64(r.hosts), Y: r.mbps()})
			e = append(e, plotter.XY{X: float64(r.hosts), Y: effs[i]})
		}
		label := w.rows[0].w.id + ": " + w.rows[0].w.title
		if err := addLine(tp, mb, w.c, false, label); err != nil {
			return err
		}
		if err := addLine(eff, e, w.c, false, label); err != nil {
			return err
		}
		if err := addValues(eff, e, w.c, w.rows[0].w == s.big); err != nil {
			return err
		}
	}
	for _, p := range []*plot.Plot{tp, eff} {
		p.Legend.Top, p.Legend.Left = true, true
		p.X.Tick.Marker = hostTicks(s.opt.hosts)
		p.X.Min, p.X.Max = 0, float64(s.opt.maxHosts())+0.5
	}
	eff.Legend.Top = false

	const w, h = 13 * vg.Inch, 5 * vg.Inch
	img := vgimg.NewWith(vgimg.UseWH(w, h), vgimg.UseDPI(110))
	dc := draw.New(img)
	dc.SetColor(color.White)
	dc.Fill(dc.Rectangle.Path())
	grid := [][]*plot.Plot{{tp, eff}}
	tiles := draw.Tiles{Rows: 1, Cols: 2, PadX: vg.Inch / 3, PadTop: vg.Inch / 8, PadBottom: vg.Inch / 8, PadLeft: vg.Inch / 8, PadRight: vg.Inch / 4}
	canvases := plot.Align(grid, tiles, dc)
	tp.Draw(canvases[0][0])
	eff.Draw(canvases[0][1])
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// addLine adds a line with points (dashed without points) and its legend.
func addLine(p *plot.Plot, xys plotter.XYs, c color.Color, dashed bool, label string) error {
	if len(xys) == 0 {
		return nil
	}
	l, pts, err := plotter.NewLinePoints(xys)
	if err != nil {
		return err
	}
	l.Color, l.Width = c, vg.Points(2)
	pts.Color, pts.Shape = c, draw.CircleGlyph{}
	if dashed {
		l.Dashes = []vg.Length{vg.Points(6), vg.Points(4)}
		l.Width = vg.Points(1.5)
		p.Add(l)
		p.Legend.Add(label, l)
		return nil
	}
	p.Add(l, pts)
	p.Legend.Add(label, l, pts)
	return nil
}

// addValues writes each point's value beside it, above it or below.
func addValues(p *plot.Plot, xys plotter.XYs, c color.Color, above bool) error {
	if len(xys) == 0 {
		return nil
	}
	var l plotter.XYLabels
	l.XYs = xys
	for _, xy := range xys {
		l.Labels = append(l.Labels, fmt.Sprintf("  %.2f", xy.Y))
	}
	labels, err := plotter.NewLabels(l)
	if err != nil {
		return err
	}
	for i := range labels.TextStyle {
		labels.TextStyle[i].Color = c
		labels.TextStyle[i].YAlign = draw.YTop
		if above {
			labels.TextStyle[i].YAlign = draw.YBottom
		}
	}
	p.Add(labels)
	return nil
}

// hostTicks label the numbers of hosts measured.
type hostTicks []int

func (t hostTicks) Ticks(lo, hi float64) []plot.Tick {
	var out []plot.Tick
	for _, n := range t {
		out = append(out, plot.Tick{Value: float64(n), Label: strconv.Itoa(n)})
	}
	return out
}
